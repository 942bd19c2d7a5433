// Package manifest reads and writes Kubernetes-shaped manifests: multi-document
// YAML or JSON in, registered kinds (controlplane/api/kinds) out, and back.
//
// Decoding walks the YAML node tree alongside the kind's proto descriptor, so
// every problem — an unknown field (the old v1beta3 `portals:`), a string
// where a number belongs, an apiVersion Kubernetes no longer serves — is
// reported with its field path and line. Fields Kubernetes types as
// int-or-string (targetPort, maxSurge, probe ports) and quantities given as
// numbers (cpu: 1) are normalized so Kubernetes YAML decodes unchanged.
// Encoding writes the same shape back (int-or-string as numbers where numeric,
// int64 as numbers), as `get -o yaml|json` shows it.
package manifest
