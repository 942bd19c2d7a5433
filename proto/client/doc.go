// Package client is the Go client of the cluster API that every Skiff
// component and user program shares: the client config file (server
// addresses, CA, client certificate), mutual-TLS connections to every
// control node with failover and retries on Unavailable (a write only when
// it provably was not applied: never sent, or marked so by the server;
// otherwise ErrOutcomeUnknown; a Create with CreateIDAnnotation and every
// Delete settle their own outcome), typed helpers over
// the kind-agnostic envelope, an informer (list, then watch from the list's
// resourceVersion, re-list when the history is gone) and an Event recorder.
//
// It imports only proto/ packages: kind metadata it needs comes from the
// envelope (Object.kind) and from message names, which equal kind names.
package client
