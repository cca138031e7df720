//go:build tools

// Package tools pins the commands built by e2e/env/install.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
