{{- define "trendstream-jobs.labels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: trendstream
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- /* The spec of one job: its example's, with the chart-wide settings and then its own spec
merged over it. Argument: (list $ $name $job). */ -}}
{{- define "trendstream-jobs.spec" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $job := index . 2 -}}
{{- $spec := dict -}}
{{- with $job.example -}}
{{- $text := $root.Files.Get (printf "files/examples/%s" .) -}}
{{- if not $text -}}
{{- fail (printf "jobs.%s.example: no file examples/%s in the chart" $name .) -}}
{{- end -}}
{{- $spec = (fromYaml $text).spec | deepCopy -}}
{{- end -}}
{{- $v := $root.Values -}}
{{- if and $v.kafka.bootstrapServers (hasKey $spec "kafka") -}}
{{- $_ := set $spec.kafka "bootstrapServers" $v.kafka.bootstrapServers -}}
{{- end -}}
{{- if hasKey $spec "redis" -}}
{{- with $v.redis.url -}}{{- $_ := set $spec.redis "url" . -}}{{- end -}}
{{- with $v.redis.passwordSecretName -}}{{- $_ := set $spec.redis "passwordSecretRef" (dict "name" .) -}}{{- end -}}
{{- with $v.redis.caSecretName -}}{{- $_ := set $spec.redis "caSecretRef" (dict "name" .) -}}{{- end -}}
{{- end -}}
{{- if and $v.checkpoint.gcsBucket (hasKey $spec "checkpoint") (hasKey $spec.checkpoint "gcs") -}}
{{- $_ := set $spec.checkpoint.gcs "bucket" $v.checkpoint.gcsBucket -}}
{{- end -}}
{{- if and $v.checkpoint.gcsEndpoint (hasKey $spec "checkpoint") (hasKey $spec.checkpoint "gcs") -}}
{{- $_ := set $spec.checkpoint.gcs "endpoint" $v.checkpoint.gcsEndpoint -}}
{{- end -}}
{{- with $v.networkPolicy.allowFromNamespaces -}}
{{- $_ := set $spec "networkPolicy" (dict "allowFromNamespaces" .) -}}
{{- end -}}
{{- if and $v.featureApi.authSecretName (eq (get $spec "processor") "feature-api") -}}
{{- $_ := set $spec "api" (merge (dict "authSecretRef" (dict "name" $v.featureApi.authSecretName)) (default dict (get $spec "api"))) -}}
{{- end -}}
{{- toYaml (mergeOverwrite $spec (deepCopy (default dict $job.spec))) -}}
{{- end -}}

{{- /* The labels of one alert: its severity and the chart-wide extra labels. Argument:
(list .Values.alerts $severity). */ -}}
{{- define "trendstream-jobs.alertLabels" -}}
severity: {{ index . 1 | quote }}
{{- with (index . 0).labels }}
{{ toYaml . }}
{{- end }}
{{- end -}}
