// Package apiv1 holds Skiff's public API objects (package skiff.api.v1),
// generated from the .proto files beside it. Field names are Kubernetes' JSON
// names, so protojson reads and writes Kubernetes-shaped JSON; the manifest
// codec (controlplane/api/manifest) adds what protojson cannot: int-or-string
// and numeric quantities, unknown-field errors with line numbers.
//
// Regenerate with `make proto`; generated code is committed. quantity.go is
// hand-written: the resource quantity parser shared by control plane and
// agent.
package apiv1
