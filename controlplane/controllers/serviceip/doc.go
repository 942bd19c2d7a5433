// Package serviceip allocates Service ClusterIPs from the service CIDR and
// NodePorts from the node port range, releases them when Services go, and
// never hands one out twice — also across leader changes.
//
// Uniqueness does not rest on the leader's memory: every allocation is an
// allocation record, a ConfigMap in kube-system named after the address
// ("clusterip-10.96.0.7", "nodeport-30080") and labelled
// skiff.dev/allocation, created with create-if-absent before the Service
// is updated (conditionally on its resourceVersion). Two leaders racing
// (a deposed one's late write) cannot both create the same record, and a
// Service whose update lost the race keeps the record it owns, which the
// next attempt reuses. Records whose Service is gone or no longer uses
// them are deleted: at once when the Service is deleted; otherwise once
// the Service has moved past the resourceVersion the record names (each
// record carries the version its Service update is conditional on, and a
// reused record is re-dated before its update), because until then that
// update may still land — however slow it is, and whatever this loop's
// informer has seen. Records without that version go after OrphanGrace.
// This is the
// shape of Kubernetes' IPAddress objects (MultiCIDRServiceAllocator);
// a dedicated kind can replace the ConfigMaps without changing the logic.
//
// An explicitly requested ClusterIP or NodePort that another Service holds
// (or that is outside the range) gets a Warning Event and stays
// unallocated: the Service is not given a different one behind the
// user's back.
package serviceip
