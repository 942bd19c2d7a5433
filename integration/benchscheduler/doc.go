// Command benchscheduler measures the scheduler end to end (`make
// bench-scheduler`): a 3-node in-process control plane (Raft store + API
// server per node, mutual TLS on loopback) with the leader loops running,
// thousands of hollow nodes in this process sharing one pod watch, and
// rounds of pods created through the API. It reports binds committed per
// second and the latency from a pod's create call to its bind being seen
// on a watch, then one summary line:
//
//	scheduler-bench: nodes=5000 pods=50000 pods_per_s=N p99_ms=N
//
// Pods come from Deployments when the deployment and replicaset
// controllers are registered (controllers/builtin), else they are created
// directly with a ReplicaSet-like ownerReference (so owner spreading
// applies) and the output says so. `make bench-scheduler` runs it three
// times (-repeat 3) on fresh clusters and reports the median run: single
// runs on a small VM vary by ±15 %.
package main
