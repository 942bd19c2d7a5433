// Package authz decides who may do what in the cluster API, from the
// caller's certificate identity (controlplane/pki):
//
//   - control nodes: everything (they run the scheduler and controllers);
//   - admins, viewers, users (role user) and service accounts (bearer
//     tokens): Kubernetes' RBAC (rbac.go) on a Policy — the stored Roles,
//     ClusterRoles and bindings a control node keeps in memory
//     (controlplane/rbac), over the built-in policy (bootstrap.go):
//     cluster-admin, admin, edit and view (aggregated from
//     system:aggregate-to-*), skiff:admins bound to cluster-admin and
//     skiff:viewers to view (every kind but Secrets: what viewers read
//     before RBAC). Subjects match by the certificate's common name
//     ("user:alice", "admin"), its organizations, or
//     system:serviceaccount:NS:NAME;
//   - worker nodes (node:<name>), Kubernetes' node authorizer: read pods,
//     services, endpoints, nodes and leases; get a Secret, ConfigMap or
//     PersistentVolumeClaim only while a pod bound to the node references
//     it (volumes, projected volumes, env, envFrom, imagePullSecrets),
//     decided on a Graph the API server keeps from its stored pods; never
//     list or watch those kinds; get by name a PersistentVolume bound to
//     such a claim or provisioned on the node (nodevolumes.go, decided on
//     the stored volume), never list or watch them. Writes: create and update only their own
//     Node (and its status) and their own heartbeat Lease
//     (kube-node-lease/<name>); drop the provisioner finalizer of a
//     volume provisioned on them that is being deleted (nothing else in
//     it); update the status of pods bound to them
//     and delete them (decided on the STORED pod's spec.nodeName, which the
//     server passes in Request.Stored); create and update Events; no pod
//     creates (there are no static pods to mirror). Nothing else.
//   - NodeRestriction on what a node writes into its own Node
//     (AuthorizeObject, on the object to store): no change to spec.taints
//     after registration, no label under node-restriction.kubernetes.io/
//     (or a subdomain of it) set, changed or removed.
//
// Denials wrap ErrForbidden and say who, what, where and why.
package authz
