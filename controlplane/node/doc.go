// Package node runs a Skiff machine from its data dir: the control-node
// daemon (replicated store, API server, join and admin services on one
// port) and a worker: its join, its certificate kept renewed, and its
// in-process services (Config.Worker: ctl join runs the agent there, with
// a client that takes the renewer's current certificate and CAs).
//
// It owns the data dir layout and the bootstrap flows behind `ctl init`,
// `ctl join` and `ctl recover`:
//
//	<data-dir>/node.json     who this node is (role, name, addresses, ports)
//	<data-dir>/pki/          ca.crt (the trusted CAs, the signer first; + ca.key
//	                         of the signer on control nodes), the node's
//	                         key pair (control.crt/.key or node.crt/.key)
//	<data-dir>/raft/         the store (control nodes)
//	<data-dir>/audit/        audit.log of mutating requests (control nodes)
//	<data-dir>/admin.conf    admin client config (control nodes)
//	<data-dir>/node.conf     the worker's client config (its node:<name> cert)
//	<data-dir>/agent/        the agent's state (workers; see ctl join)
//
// Starting on a data dir that holds node.json always resumes that node: it
// never bootstraps a second cluster or wipes state.
//
// On the API port a pki.SplitListener sends callers without a client
// certificate to a gRPC server that has only the join service (anything
// else is answered Unauthenticated); callers with a certificate from the
// cluster CA reach the API, the join service (renewals) and the admin
// service. Authorization is controlplane/authz behind api.Authorizer; every
// mutating request (API writes, admin calls, joins) and every snapshot save
// or restore is written to the audit log. A worker join under the name of a
// live Node is refused unless its token is bound to that name (livenode.go).
//
// Both ports check the replicated deny list at every TLS handshake
// (revocation.go): the store port serves control identities of current
// members only (consensus.Config.PeerIdentity), the API port refuses
// revoked certificates and control identities that are not members. A
// change of the list closes open connections it now refuses.
//
// Both ports, and every client config a node builds, trust the CAs of a
// pki.Bundle that follows /skiff/ca (cabundle.go), so that `ctl ca rotate`
// (carotate.go: start, status, finish) replaces the CA with no restart.
//
// Metrics (metrics.go): each node has one Prometheus registry with the Go
// runtime and process collectors that its parts register on; a control
// node serves it on its metrics port (7446) over mutual TLS to admin and
// control identities, and any node as plain HTTP at Config.MetricsAddr.
//
// Cluster-internal keys in the store (never under /registry/):
//
//	/skiff/tokens/<id>        join token records (JSON pki.TokenRecord)
//	/skiff/controlnodes/<id>  each control node's API and store address
//	/skiff/gossip-key         the memberlist key handed to joined nodes
//	/skiff/revocations/<identity>  the deny list (JSON pki.Revocation)
//	/skiff/cluster-network    the pod network ctl init was given (JSON clusternet.Config)
//	/skiff/podcidr-claims/<block>  the Node holding each pod range block (see clusternet)
//	/skiff/ca                 the CAs once a rotation started (signer + key,
//	                          trusted set, the previous CA during one)
//	/skiff/certs/<identity>   the issuer of the identity's last certificate
package node
