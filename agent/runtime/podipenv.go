package runtime

// Environment variables whose value is the pod's own address
// (valueFrom.fieldRef status.podIP / status.podIPs). The address comes from
// CNI after the sandbox's network is set up, so these are resolved when the
// container is created, and a container that has one is never pre-created
// during network setup (see precreate).

// Field paths an EnvVar may leave for the runtime to fill.
const (
	FieldPodIP  = "status.podIP"
	FieldPodIPs = "status.podIPs"
)

// needsPodIP: c's environment refers to the pod's address.
func needsPodIP(c *Container) bool {
	for _, e := range c.Env {
		if e.FieldPath != "" {
			return true
		}
	}
	return false
}

// withPodIP returns c's env with pod-address fields filled from ip (the
// pod has one address family; podIPs lists it alone, comma-separated as
// kubelet does for several).
func withPodIP(env []EnvVar, ip string) []EnvVar {
	out := make([]EnvVar, len(env))
	for i, e := range env {
		if e.FieldPath == FieldPodIP || e.FieldPath == FieldPodIPs {
			e.Value = ip
		}
		out[i] = e
	}
	return out
}
