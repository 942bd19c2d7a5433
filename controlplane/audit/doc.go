// Package audit writes the API audit log: one JSON line per mutating
// request (who, verb, kind, namespace/name, result and gRPC code) to a
// file in the node's data dir, rotated by size keeping a fixed number of
// old files (audit.log, audit.log.1 … audit.log.N, newest first).
package audit
