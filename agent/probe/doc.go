// Package probe runs Kubernetes container probes: startup, liveness and
// readiness, each an exec, httpGet, tcpSocket or grpc check (the standard
// grpc.health.v1 Health/Check, grpc.go), with Kubernetes'
// timing fields (initialDelaySeconds, periodSeconds, timeoutSeconds,
// successThreshold, failureThreshold) and defaults.
//
// It owns the checks and the per-container state machine: the startup probe
// gates the other two; a liveness (or startup) failure reaching its
// threshold is reported once so the runtime restarts the container;
// readiness changes are reported both ways. Network checks dial from inside
// the pod's network namespace (see NetnsDialer), so probing never sends a
// packet from the node's own namespace into the pod network.
package probe
