// Package apitest starts in-process control planes for tests, benchmarks
// and `ctl dev-server`: a consensustest store cluster with an API server per
// node on loopback, mutual TLS from the test CA, and client configs.
package apitest
