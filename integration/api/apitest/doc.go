// Package apitest starts in-process control planes for tests and
// benchmarks: a consensustest store cluster with an API server per node on
// loopback, mutual TLS from the test CA, and client configs. It is never
// linked into ctl (integration/importrules checks that).
package apitest
