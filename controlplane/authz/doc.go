// Package authz decides who may do what in the cluster API, from the
// caller's certificate identity (controlplane/pki):
//
//   - admin (bootstrap admin and admin users): everything;
//   - control nodes: everything (they run the scheduler and controllers);
//   - viewers: get, list and watch every kind except Secrets;
//   - worker nodes (node:<name>), the node restriction: read pods,
//     services, endpoints, configmaps, secrets, nodes and leases; create
//     and update only their own Node (and its status) and their own
//     heartbeat Lease (kube-node-lease/<name>); update the status of
//     pods bound to them and delete them (decided on the STORED pod's
//     spec.nodeName, which the server passes in Request.Stored); create and
//     update Events.
//     Nothing else.
//
// Denials wrap ErrForbidden and say who, what, where and why.
package authz
