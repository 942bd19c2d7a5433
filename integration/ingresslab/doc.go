// Package ingresslab is the Ingress must-show on a hostlab cluster (three
// control hosts, two workers, each its own namespaces on a lab bridge
// with no route out): curl on the lab's Admin host reaches a worker's
// built-in ingress controller on :80 and :443 — Host-header routing to
// two Services, Exact vs Prefix, TLS with SNI from a Secret — and a
// backend pod deleted while requests run costs no failed request.
package ingresslab
