// Package hpa is the HorizontalPodAutoscaler controller for CPU
// utilisation: it reads the CPU usage agents report for each pod in their
// node's NodeMetrics (cgroup readings, every 15 s; a pod's status.metrics
// when its node has no fresh sample), relates it to the pods' CPU requests, and sets the
// target's (Deployment, ReplicaSet, StatefulSet, ReplicationController)
// spec.replicas to ceil(current × utilisation / target), within
// minReplicas..maxReplicas, ignoring changes within a 10% tolerance, and
// scaling down no lower than the highest recommendation of the
// stabilization window (behavior.scaleDown, 300 s by default). With no
// metrics it sets ScalingActive=False (FailedGetResourceMetric) and leaves
// the target alone. Every write carries the resourceVersion it read.
package hpa
