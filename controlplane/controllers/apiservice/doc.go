// Package apiservice keeps the `kubernetes` Service in the default
// namespace, through which a program in a pod reaches the API as in
// Kubernetes: a ClusterIP Service at the first address of the Service
// range (10.96.0.1 by default), port 443 named https, without a selector,
// and its Endpoints listing every current control node's API address.
//
// It runs on the leader: at start, every Period, it creates the Service
// when missing, puts its ports back when they drift, and rewrites the
// Endpoints when the set of control nodes (their registered API addresses)
// changed: a control node that joins appears within one Period, one
// removed from the store disappears. The Service proxy on every node then
// sends 10.96.0.1:443 to one of those addresses.
//
// Only the leader's control identity writes these objects in practice:
// RBAC gives viewers no write, and the node authorizer lets a worker
// node read Services and Endpoints but write neither.
//
// The kind EndpointSlice does not exist in Skiff (the Service proxy reads
// Endpoints), so no slice is written.
package apiservice
