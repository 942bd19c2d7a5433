// Package deployment is the Deployment controller. A Deployment owns one
// ReplicaSet per distinct pod template, named <deployment>-<hash of the
// template> and labelled pod-template-hash=<hash>; the one matching the
// current template is "new", the rest "old". RollingUpdate moves replicas
// from old to new without ever letting the pods exceed replicas+maxSurge
// or the available pods drop below replicas-maxUnavailable — computed from
// spec and status counts so that they hold for the pods themselves, not
// only for the ReplicaSets' specs; Recreate scales the old ones to zero and
// waits for their pods to go before scaling up the new one.
//
// It keeps revision annotations (deployment.kubernetes.io/revision) on the
// ReplicaSets and the Deployment, deletes old ReplicaSets beyond
// revisionHistoryLimit, reports the Progressing condition (with
// ProgressDeadlineExceeded after progressDeadlineSeconds without progress)
// and Available, and while spec.paused only scales, never rolls.
//
// The helpers exported here (Revision, TemplateHash, OwnedReplicaSets …)
// are what `ctl rollout` uses.
package deployment
