//go:build tools

// Package tools pins the commands built by e2e/env/up.
package tools

import _ "go.etcd.io/etcd/server/v3"
