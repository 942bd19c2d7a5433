package agent

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// Version is what the Node reports as its kubelet version.
const Version = "skiff-agent/v0"

// MaxPods is the default "pods" capacity (Kubernetes' default).
const MaxPods = "110"

// machineCapacity reads cpu and memory of this machine.
func machineCapacity() map[string]string {
	out := map[string]string{"cpu": strconv.Itoa(goruntime.NumCPU()), "pods": MaxPods}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) >= 2 && fields[0] == "MemTotal:" {
				out["memory"] = fields[1] + "Ki"
			}
		}
	}
	return out
}

// allocatable is capacity minus reserved (never below zero).
func allocatable(capacity, reserved map[string]string) (map[string]string, error) {
	out := maps.Clone(capacity)
	for name, r := range reserved {
		c, ok := capacity[name]
		if !ok {
			continue
		}
		cq, err := apiv1.ParseQuantity(c)
		if err != nil {
			return nil, fmt.Errorf("%w: capacity %s=%q: %v", ErrConfig, name, c, err)
		}
		rq, err := apiv1.ParseQuantity(r)
		if err != nil {
			return nil, fmt.Errorf("%w: reserved %s=%q: %v", ErrConfig, name, r, err)
		}
		a := cq.Sub(rq)
		if a.Sign() < 0 {
			a = apiv1.NewQuantity(0)
		}
		out[name] = a.String()
	}
	return out, nil
}

// DetectNodeIP picks the first global unicast IPv4 address of an interface
// that is up and not a bridge of pods (skip names with these prefixes).
func DetectNodeIP(skipPrefixes ...string) (netip.Addr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, err
	}
next:
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		for _, p := range skipPrefixes {
			if strings.HasPrefix(ifc.Name, p) {
				continue next
			}
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(ipn.IP.To4()); ok && ip.IsGlobalUnicast() {
					return ip, nil
				}
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("no global IPv4 address on any interface: set the node IP")
}

// nodeStatus is the status the agent reports; heartbeat refreshes it.
func (a *Agent) nodeStatus(now time.Time) *apiv1.NodeStatus {
	t := ts(now)
	st := &apiv1.NodeStatus{Capacity: maps.Clone(a.capacity), Allocatable: maps.Clone(a.allocatable),
		Conditions: []*apiv1.NodeCondition{{Type: "Ready", Status: "True", Reason: "KubeletReady",
			Message: "skiff agent is posting ready status", LastHeartbeatTime: t, LastTransitionTime: a.readySince}},
		Addresses: []*apiv1.NodeAddress{{Type: "Hostname", Address: a.cfg.NodeName}},
		NodeInfo: &apiv1.NodeSystemInfo{OperatingSystem: goruntime.GOOS, Architecture: goruntime.GOARCH,
			KernelVersion: kernelVersion(), KubeletVersion: Version, KubeProxyVersion: Version,
			ContainerRuntimeVersion: "libcontainer://runc"}}
	if a.cfg.NodeIP.IsValid() {
		st.Addresses = append([]*apiv1.NodeAddress{{Type: "InternalIP", Address: a.cfg.NodeIP.String()}}, st.Addresses...)
	}
	if a.cfg.StreamPort > 0 {
		st.DaemonEndpoints = &apiv1.NodeDaemonEndpoints{KubeletEndpoint: &apiv1.DaemonEndpoint{Port: int32(a.cfg.StreamPort)}}
	}
	return st
}

func kernelVersion() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (a *Agent) nodeLabels() map[string]string {
	l := map[string]string{"kubernetes.io/hostname": a.cfg.NodeName, "kubernetes.io/os": goruntime.GOOS,
		"kubernetes.io/arch": goruntime.GOARCH}
	maps.Copy(l, a.cfg.Labels)
	return l
}

// register creates this node's Node, or adopts an existing one: our
// labels are set, and the status and the lease are written. spec.podCIDR
// is the control plane's to give (awaitPodCIDR waits for it).
func (a *Agent) register(ctx context.Context) error {
	now := time.Now()
	a.readySince = ts(now)
	node := &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: a.cfg.NodeName, Labels: a.nodeLabels()},
		Spec: &apiv1.NodeSpec{}, Status: a.nodeStatus(now)}
	created, err := client.Create(ctx, a.cfg.Client, node)
	if err == nil {
		a.log.Info("registered node")
		a.lease.SetOwner(created)
		return a.reportReady(ctx) // Create may drop status on some servers; write it for sure
	}
	if !client.IsAlreadyExists(err) {
		return fmt.Errorf("register node %s: %w", a.cfg.NodeName, err)
	}
	for attempt := 0; ; attempt++ {
		cur, err := client.Get[*apiv1.Node](ctx, a.cfg.Client, "", a.cfg.NodeName)
		if err != nil {
			return fmt.Errorf("register node %s: %w", a.cfg.NodeName, err)
		}
		a.lease.SetOwner(cur)
		next := codec.Clone(cur)
		if next.Metadata.Labels == nil {
			next.Metadata.Labels = map[string]string{}
		}
		maps.Copy(next.Metadata.Labels, a.nodeLabels())
		if next.Spec == nil {
			next.Spec = &apiv1.NodeSpec{}
		}
		if !proto.Equal(next, cur) {
			if _, err := client.Update(ctx, a.cfg.Client, next); err != nil {
				if client.IsConflict(err) && attempt < 5 {
					continue
				}
				return fmt.Errorf("register node %s: update: %w", a.cfg.NodeName, err)
			}
		}
		break
	}
	a.log.Info("adopted existing node")
	return a.reportReady(ctx)
}

// reportReady writes the status, then renews the lease.
func (a *Agent) reportReady(ctx context.Context) error {
	if err := a.writeNodeStatus(ctx); err != nil {
		return err
	}
	return a.renewLease(ctx)
}

// writeNodeStatus writes the whole status with a fresh lastHeartbeatTime. It
// carries no resourceVersion: the status is this agent's to write (the
// node lifecycle controller's Unknown is meant to be overwritten by a live
// agent).
func (a *Agent) writeNodeStatus(ctx context.Context) error {
	st := a.nodeStatus(time.Now())
	_, err := client.UpdateStatus(ctx, a.cfg.Client, &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: a.cfg.NodeName}, Status: st})
	if err != nil {
		return fmt.Errorf("node %s status: %w", a.cfg.NodeName, err)
	}
	return nil
}

func (a *Agent) renewLease(ctx context.Context) error {
	if err := a.lease.Renew(ctx); err != nil {
		return fmt.Errorf("node %s heartbeat: %w", a.cfg.NodeName, err)
	}
	a.heartbeats.Add(1)
	return nil
}

// checkOwnStatus marks the status for rewriting when the stored one is not
// what this agent reports: Ready other than True (the controller's Unknown
// after missed heartbeats), or other capacity.
func (a *Agent) checkOwnStatus(n *apiv1.Node) {
	ready := apiv1.NodeIsReady(n)
	if ready && maps.Equal(n.GetStatus().GetCapacity(), a.capacity) && maps.Equal(n.GetStatus().GetAllocatable(), a.allocatable) {
		return
	}
	if !ready {
		a.readyLost.Store(true)
	}
	a.statusStale.Store(true)
	select {
	case a.statusWake <- struct{}{}:
	default:
	}
}

// runHeartbeats registers the node (retrying until it works), then renews
// its lease every HeartbeatInterval and writes its status when stale or
// every StatusReportInterval, until ctx ends; failures are logged and
// retried at the next tick.
func (a *Agent) runHeartbeats(ctx context.Context) error {
	pause := 200 * time.Millisecond
	for {
		err := a.register(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		a.log.Error("node registration failed; retrying", "err", err, "in", pause)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
		pause = min(2*pause, 10*time.Second)
	}
	close(a.registered)
	lastStatus := time.Now()
	t := time.NewTicker(a.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := a.renewLease(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("heartbeat failed", "err", err)
			}
		case <-a.statusWake:
		}
		if !a.statusStale.Swap(false) && time.Since(lastStatus) < a.cfg.StatusReportInterval {
			continue
		}
		if a.readyLost.Swap(false) {
			a.readySince = ts(time.Now()) // Unknown (or False) → True is a transition
		}
		if err := a.writeNodeStatus(ctx); err != nil {
			if ctx.Err() == nil {
				a.log.Warn("status report failed", "err", err)
				a.statusStale.Store(true) // again at the next tick
			}
			continue
		}
		lastStatus = time.Now()
	}
}
