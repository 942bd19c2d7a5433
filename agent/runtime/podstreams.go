package runtime

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/skiffhq/skiff/agent/probe"
)

// PodIdentity is what a stream to a pod checks before it reaches the pod:
// that the uid it was given is the pod it was asked for, and which
// containers it has.
type PodIdentity struct {
	UID, Namespace, Name string
	// Containers are the app containers, in spec order; InitContainers
	// the init containers.
	Containers, InitContainers []string
}

// PodIdentity reports the name and containers of the pod with uid.
func (r *Runtime) PodIdentity(uid string) (PodIdentity, error) {
	p, err := r.pod(uid)
	if err != nil {
		return PodIdentity{}, err
	}
	pod := p.rec.Pod
	id := PodIdentity{UID: pod.UID, Namespace: pod.Namespace, Name: pod.Name}
	for _, c := range pod.Containers {
		id.Containers = append(id.Containers, c.Name)
	}
	for _, c := range pod.InitContainers {
		id.InitContainers = append(id.InitContainers, c.Name)
	}
	return id, nil
}

// DialPort connects to port of the pod with uid, at 127.0.0.1 inside the
// pod's network namespace (as the kubelet's port-forward does), so a port
// a container binds to loopback only is reachable too.
func (r *Runtime) DialPort(ctx context.Context, uid string, port int) (net.Conn, error) {
	p, err := r.pod(uid)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	ns := p.rec.Sandbox.Netns
	p.mu.Unlock()
	if ns == "" {
		return nil, fmt.Errorf("%s: %w (no network namespace yet)", uid, ErrNotRunning)
	}
	return probe.NetnsDialer(ns)(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
}
