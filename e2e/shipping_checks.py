"""The Python side of the shipping tests (e2e/tests/shipping.rs), run with the shipping
virtualenv's interpreter (e2e/env/requirements-shipping.txt). Each subcommand prints what it
checked and exits non-zero with the reasons when a check fails."""

import argparse
import copy
import json
import re
import sys
from pathlib import Path

import yaml


def _converter(sources: Path):
    """kubeconform's own CRD conversion script (scripts/openapi2jsonschema.py of its module)."""
    sys.path.insert(0, str(sources))
    import openapi2jsonschema  # noqa: E402  (copied there by e2e/env/install)
    return openapi2jsonschema


def schemas(args) -> None:
    """kubeconform schemas for the kinds in the given manifests, named as its
    `{{.ResourceKind}}{{.KindSuffix}}.json` template wants: the core API's from the Kubernetes
    swagger document (each with the definitions it reaches), the CRDs' with kubeconform's script."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    convert = _converter(Path(args.sources))
    wanted = set()
    for manifest in args.manifests:
        for document in yaml.safe_load_all(Path(manifest).read_text()):
            if document:
                wanted.add((document["apiVersion"], document["kind"]))
    # Strict like kubectl: no property the schema does not name; int-or-string as either.
    swagger = json.loads(Path(args.swagger).read_text())["definitions"]
    definitions = convert.replace_int_or_string(convert.additional_properties(swagger))
    written = set()
    for name, schema in definitions.items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            if (api_version, gvk["kind"]) not in wanted:
                continue
            group = gvk["group"].split(".")[0]
            suffix = f"-{group}-{gvk['version']}" if group else f"-{gvk['version']}"
            document = dict(schema, definitions=_reachable(name, definitions))
            (out / f"{gvk['kind'].lower()}{suffix}.json").write_text(json.dumps(document))
            written.add((api_version, gvk["kind"]))
    for crd_file in args.crds:
        for crd in yaml.safe_load_all(Path(crd_file).read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group = crd["spec"]["group"].split(".")[0]
            for version in crd["spec"]["versions"]:
                schema = convert.additional_properties(
                    copy.deepcopy(version["schema"]["openAPIV3Schema"]), skip=True)
                schema = convert.replace_int_or_string(schema)
                name = f"{crd['spec']['names']['kind'].lower()}-{group}-{version['name']}.json"
                (out / name).write_text(json.dumps(schema))
                written.add((f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"]))
    missing = sorted(f"{k} {v}" for v, k in wanted - written)
    _report([f"no schema for {m}" for m in missing], f"{len(written)} schemas in {out}")


def _reachable(name: str, definitions: dict) -> dict:
    """The definitions that `name` refers to, directly or not, itself included."""
    found, todo = {}, [name]
    while todo:
        current = todo.pop()
        if current in found:
            continue
        found[current] = definitions[current]
        todo += re.findall(r'"#/definitions/([^"]+)"', json.dumps(definitions[current]))
    return found


def skaffold(args) -> None:
    """skaffold.yaml against the JSON schema skaffold ships for its apiVersion."""
    import jsonschema

    config = list(yaml.safe_load_all(Path(args.config).read_text()))
    schema = json.loads(Path(args.schema).read_text())
    expected = Path(args.schema).stem.removeprefix("skaffold-")
    failures = []
    for document in config:
        if document.get("apiVersion") != f"skaffold/{expected}":
            failures.append(f"apiVersion {document.get('apiVersion')!r}, the newest schema is skaffold/{expected}")
        validator = jsonschema.validators.validator_for(schema)(schema)
        # The schema is an anyOf of alternatives: report the error deepest inside them.
        error = jsonschema.exceptions.best_match(validator.iter_errors(document))
        if error is not None:
            failures.append(f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message[:300]}")
    _report(failures, f"{args.config}: {len(config)} document(s) valid against skaffold/{expected}")


def crd_matches(args) -> None:
    """The CRD in the rendered chart is crds/'s, field for field (numbers compared as numbers)."""
    source = yaml.safe_load(Path(args.crd).read_text())
    rendered = [d for d in yaml.safe_load_all(Path(args.rendered).read_text())
                if d and d.get("kind") == "CustomResourceDefinition"
                and d["metadata"]["name"] == source["metadata"]["name"]]
    failures = []
    if len(rendered) != 1:
        failures.append(f"expected one CRD {source['metadata']['name']} in the chart, found {len(rendered)}")
    elif rendered[0]["spec"] != source["spec"]:
        failures.append(f"the chart's CRD differs from {args.crd}")
    _report(failures, f"the chart's CRD is {args.crd}")


def hcl(args) -> None:
    """Every .tf and .tfvars file parses as HCL (python-hcl2), and terraform/ holds what the
    deployment relies on (issue 8's list), read from the parsed configuration."""
    import hcl2

    root = Path(args.dir)
    parsed = {}
    failures = []
    for file in sorted([*root.glob("*.tf"), *root.glob("*.tfvars*")]):
        try:
            parsed[file.name] = _unquote(hcl2.loads(file.read_text()))
        except Exception as err:  # the parser's errors have no common base class
            failures.append(f"{file.name}: {err}")
    resources: dict[str, dict[str, dict]] = {}
    variables = {}
    for document in parsed.values():
        for block in document.get("resource", []):
            for kind, named in block.items():
                for name, body in named.items():
                    resources.setdefault(kind, {})[name] = body
        for block in document.get("variable", []):
            variables.update(block)

    def need(condition, message):
        if not condition:
            failures.append(message)

    clusters = resources.get("google_container_cluster", {})
    need(clusters and all(c.get("enable_autopilot") is True for c in clusters.values()),
         "a GKE Autopilot cluster (google_container_cluster with enable_autopilot = true)")
    buckets = resources.get("google_storage_bucket", {})
    need({"checkpoints", "dlq"} <= set(buckets), "buckets checkpoints and dlq")
    for name, bucket in buckets.items():
        need(bucket.get("uniform_bucket_level_access") is True, f"bucket {name}: uniform bucket-level access")
        need(bucket.get("public_access_prevention") == "enforced", f"bucket {name}: public access prevention")
    rules = {name: json.dumps(bucket.get("lifecycle_rule", [])) for name, bucket in buckets.items()}
    need('"SetStorageClass"' in rules.get("dlq", "") and '"NEARLINE"' in rules.get("dlq", ""),
         "dlq bucket: a Nearline transition")
    need("var.checkpoint_retention_days" in rules.get("checkpoints", ""), "checkpoints bucket: deletion after var.checkpoint_retention_days")
    need("var.dlq_retention_days" in rules.get("dlq", ""), "dlq bucket: deletion after var.dlq_retention_days")
    need(variables.get("checkpoint_retention_days", {}).get("default") == 7, "checkpoint_retention_days defaults to 7")
    need(variables.get("dlq_retention_days", {}).get("default") == 30, "dlq_retention_days defaults to 30")
    redis = resources.get("google_redis_instance", {})
    need(redis and all(r.get("auth_enabled") is True and r.get("transit_encryption_mode") == "SERVER_AUTHENTICATION"
                       for r in redis.values()), "Memorystore Redis with AUTH and in-transit encryption")
    need(resources.get("google_artifact_registry_repository"), "an Artifact Registry repository")
    wi = [b for b in resources.get("google_service_account_iam_member", {}).values()
          if b.get("role") == "roles/iam.workloadIdentityUser"]
    need(wi and all(re.search(r"(svc\.id\.goog|workload_pool})\[", b.get("member", "")) for b in wi),
         "roles/iam.workloadIdentityUser bindings for Kubernetes service accounts")
    unvalidated = [name for name, v in variables.items() if "validation" not in v and "default" not in v]
    need(not unvalidated, f"variables without default need a validation: {', '.join(unvalidated)}")
    _report(failures, f"{len(parsed)} HCL files parse; {len(variables)} variables, "
                      f"{sum(len(r) for r in resources.values())} resources checked")


def _unquote(value):
    """python-hcl2 keeps the quotes of block labels and string literals: drop them."""
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIALS?)", re.I)
SECRET_FILE = re.compile(r"(\.pem|\.key|\.p12|\.env|id_rsa|credentials\.json|\.netrc)\b")


def dockerfiles(args) -> None:
    """The checklist beside hadolint: the image runs as a numeric non-root user, every base is
    pinned (an exact version tag or a digest), and nothing secret is baked in."""
    failures = []
    for path in args.files:
        lines = _logical_lines(Path(path).read_text())
        args_defaults = {}
        users = []
        for line in lines:
            word, _, rest = line.partition(" ")
            word = word.upper()
            if word == "ARG" and "=" in rest:
                key, _, value = rest.partition("=")
                args_defaults[key.strip()] = value.strip()
            if word == "FROM":
                image = rest.split()[0]
                image = re.sub(r"\$\{?(\w+)\}?", lambda m: args_defaults.get(m.group(1), m.group(0)), image)
                pinned = "@sha256:" in image or re.search(r":[^/]*\d+\.\d+", image)
                # A base that is a build argument without a default is required of the builder,
                # which names the exact image (e2e/env/images passes a content-addressed tag).
                supplied = re.fullmatch(r"\$\{?\w+\}?", image) is not None and image.strip("${}") not in args_defaults
                stage = image in {s.split()[-1] for s in lines if s.upper().startswith("FROM ") and " AS " in s.upper()}
                if not (pinned or stage or supplied):
                    failures.append(f"{path}: base {image} is not pinned to an exact version or a digest")
            if word == "USER":
                users.append(rest.strip())
            if word in {"ENV", "ARG", "LABEL"} and SECRET_NAME.search(rest.split("=")[0]):
                failures.append(f"{path}: {line!r} looks like a secret in the image")
            if word in {"COPY", "ADD"} and SECRET_FILE.search(rest):
                failures.append(f"{path}: {line!r} copies a secret-looking file")
        final = users[-1] if users else "root"
        uid = final.split(":")[0]
        if not uid.isdigit() or uid == "0":
            failures.append(f"{path}: the final USER is {final!r}, not a numeric non-root user")
    _report(failures, f"{len(args.files)} Dockerfile(s): non-root numeric USER, pinned bases, no secrets")


def _logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        current += stripped.removesuffix("\\").strip() + " "
        if not stripped.endswith("\\"):
            lines.append(current.strip())
            current = ""
    return lines


def _report(failures: list[str], ok: str) -> None:
    if failures:
        for failure in failures:
            print(f"FAIL {failure}")
        raise SystemExit(1)
    print(f"ok: {ok}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("schemas")
    p.add_argument("--sources", required=True, help="the schema-sources directory e2e/env/install made")
    p.add_argument("--swagger", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--crd", dest="crds", action="append", default=[])
    p.add_argument("manifests", nargs="+")
    p.set_defaults(run=schemas)
    p = sub.add_parser("skaffold")
    p.add_argument("config")
    p.add_argument("schema")
    p.set_defaults(run=skaffold)
    p = sub.add_parser("crd-matches")
    p.add_argument("rendered")
    p.add_argument("crd")
    p.set_defaults(run=crd_matches)
    p = sub.add_parser("hcl")
    p.add_argument("dir")
    p.set_defaults(run=hcl)
    p = sub.add_parser("dockerfiles")
    p.add_argument("files", nargs="+")
    p.set_defaults(run=dockerfiles)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
