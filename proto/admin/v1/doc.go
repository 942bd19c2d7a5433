// Package adminv1 is the cluster administration service (package
// skiff.admin.v1), generated from admin.proto beside it: join tokens,
// control-node membership, snapshot save/restore and user certificates.
// The server lives in controlplane/node; the verbs in cmd/ctl.
package adminv1
