// Package storepb is the replicated store's wire format (store.proto):
// the versioned command envelope written to the Raft log, the MVCC
// key/value records, and the KV, Cluster and Internal gRPC services spoken
// between control nodes. Generated code; `make proto` regenerates it.
package storepb
