// Package integration holds Skiff's multi-node tests: in-process clusters,
// real hosts as network namespaces, fault injection and linearizability
// checks, plus the benchmark drivers that need a whole cluster. Sub-packages
// may import every other part of the project.
package integration
