//go:build tools

// Package tools pins the registry command built by e2e/env/install.
package tools

import _ "github.com/distribution/distribution/v3/cmd/registry"
