// Package hollow runs hollow nodes: test agents that behave like a worker
// towards the control plane without running anything. A hollow node
// registers a Node through the public API (capacity, allocatable, labels,
// Ready condition), heartbeats by renewing its Lease in kube-node-lease
// (the status is rewritten only every StatusReportPeriod, or at once when
// the pool's Node watch sees it changed, e.g. Unknown), and marks
// every pod bound to it Running and Ready at once (with a pod IP from the
// pod range its Node was given, when it has one); it confirms graceful deletions of its pods as an agent
// does. It uses the same proto/client calls a real agent uses.
//
// A Pool holds many hollow nodes in one process and shares one pod watch
// (bound pods only) and one Node watch among all of them, so thousands fit in one process for
// the scheduler benchmark. Node.Stop makes a node silent, as a crashed
// machine is: no heartbeats, no pod status.
package hollow
