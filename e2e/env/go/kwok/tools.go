//go:build tools

// Package tools pins the commands built by e2e/env/up.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
