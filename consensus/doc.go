// Package consensus is Skiff's replicated store: HashiCorp Raft with a
// raft-boltdb log (fsync on) and file snapshots, under an MVCC key/value
// state machine. It owns
//
//   - the FSM: keys with create/mod revisions and versions, a global
//     revision, conditional Put/Delete, etcd-style Txn, prefix Range with
//     paging, and Watch from a revision over a bounded event history;
//   - linearizable reads from any node (leader: VerifyLeader + wait for the
//     applied index; follower: read index from the leader, then wait
//     locally) and stale reads on request;
//   - write forwarding from followers to the leader;
//   - membership with the odd-quorum policy and quorum-loss recovery;
//   - the transport: one mutual-TLS port carrying Raft and internal gRPC,
//     serving current members only (Config.PeerIdentity decides which
//     member a certificate speaks for; peerauth.go).
//
// See DESIGN.md in this folder for how the pieces fit and why.
package consensus
