//go:build tools

// Package tools pins the node commands built by e2e/env/install: the same k8s.io/kubernetes
// release as the control plane in ../k8s.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
