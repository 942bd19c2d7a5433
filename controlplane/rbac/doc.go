// Package rbac keeps what Kubernetes' RBAC decides on, on every control
// node, and the service account tokens:
//
//   - Cache follows the Roles, ClusterRoles, RoleBindings and
//     ClusterRoleBindings in the node's local store (a list, then a watch:
//     an informer over the replicated state) and answers
//     authz.Policy from memory, so no decision reads Raft. The built-in
//     policy (authz.BootstrapPolicy) stands in for any built-in object not
//     stored (yet).
//   - Loop, run by the leader, writes the built-in ClusterRoles and
//     ClusterRoleBindings when missing and fills every aggregated
//     ClusterRole's rules from the ClusterRoles its selectors match.
//   - Tokens mints and verifies service account tokens: JWTs (EdDSA)
//     bound to a pod (namespace, name, UID), with an audience and an
//     expiry, signed with a key derived from the cluster CA key every
//     control node holds (so every control node verifies what any minted).
//     A token is refused after its expiry and once its pod is gone or
//     replaced (another UID).
//   - Service serves the Authorization gRPC service: AccessReview (ctl auth
//     can-i) and CreatePodToken (the agent's projected token volume).
package rbac
