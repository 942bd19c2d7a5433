// Package consensustest starts in-process control-node clusters on loopback
// with mutual TLS from a throwaway CA, for the store's tests, integration
// tests and the store benchmark. It is test support, not production code.
package consensustest
