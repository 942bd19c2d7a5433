// Package streams is the agent's stream server on port 7445: the
// NodeStreams service (proto/stream/v1) through which the API server
// reaches a pod's containers — logs, exec, attach and port-forward.
//
// Who may call: only control nodes. The listener needs mutual TLS with a
// configuration that verifies client certificates, and every call passes
// Config.AllowPeer (wired by the caller to accept control-node identities
// only, see controlplane/pki), so a user, another worker or this worker's
// own certificate is refused. Users reach pods through the API server,
// which authorizes and audits them first.
//
// Back-pressure: every output is sent with the stream's Send, which waits
// for gRPC flow control; input is handed on through pipes that block until
// the command reads. Nothing is buffered without bound, and every
// goroutine of a call ends when the call does (either side going away
// cancels the call's context, which kills an exec'd command).
package streams
