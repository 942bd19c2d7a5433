package apiv1

// NodeLeaseNamespace holds the nodes' heartbeat Leases, one per node and
// named after it (Kubernetes' kube-node-lease). Agents renew theirs; the
// node lifecycle controller counts a renewal as a heartbeat.
const NodeLeaseNamespace = "kube-node-lease"

// MicroTimeFormat is how Lease times (MicroTime) are written: RFC 3339 in
// UTC with microseconds.
const MicroTimeFormat = "2006-01-02T15:04:05.000000Z07:00"
