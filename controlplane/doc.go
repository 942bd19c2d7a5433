// Package controlplane runs what only the Raft leader does. leader.go is
// the one place leader-only loops (scheduler, controllers) start when this
// node gains leadership and stop when it loses it. Sub-packages: api (the
// gRPC API server, kind registry, manifests), scheduler, controllers, pki,
// authz.
package controlplane
