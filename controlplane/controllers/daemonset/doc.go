// Package daemonset is the DaemonSet controller: one pod per eligible
// node, bound directly (spec.nodeName set, the scheduler is not involved).
// A node is eligible when the pod's nodeSelector and required node
// affinity match it and the pod tolerates its NoSchedule and NoExecute
// taints; a pod on a node that later gets an untolerated NoSchedule taint
// stays, one with an untolerated NoExecute taint (or a selector that no
// longer matches) goes. Template changes roll out per node with the
// RollingUpdate strategy (maxUnavailable, maxSurge) or wait for manual
// deletion with OnDelete. Pods carry the template's hash in the
// controller-revision-hash label.
package daemonset
