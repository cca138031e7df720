//go:build tools

// Package tools pins the commands built by e2e/env/install.
package tools

import _ "github.com/yannh/kubeconform/cmd/kubeconform"
