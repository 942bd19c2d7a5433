// Package streamtest tests logs, exec, attach, port-forward and cp end to
// end, and measures them (`make bench-stream`): real control nodes (Raft,
// API servers with the cluster's authorizer), a real agent with its stream
// server on its port behind mutual TLS with certificates from the
// cluster's CA (controlplane/pki), real containers (libcontainer, busybox
// from an in-process registry), and the ctl verbs run in-process. The
// test binary runs in a network namespace of its own with only loopback
// (runtimetest.Main), so every connection stays inside it.
package streamtest
