package overlay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// HostGW is the pod network without encapsulation (flannel's host-gw): a
// route to each peer's pod range via the peer's node IP. It needs every
// node on one L2 network (the kernel refuses a gateway that is not on a
// directly connected subnet, and HostGW reports it naming the peer). Pod
// MTU stays the underlay's; nothing is NATed.
type HostGW struct {
	log *slog.Logger
	h   *netlink.Handle

	mu     sync.Mutex
	routes map[string]*netlink.Route // by node name: what is programmed

	closeOnce sync.Once
}

// NewHostGW programs routes in the network namespace at netnsPath (""
// means the caller's).
func NewHostGW(netnsPath string, log *slog.Logger) (*HostGW, error) {
	if log == nil {
		log = slog.Default()
	}
	h, err := handle(netnsPath)
	if err != nil {
		return nil, err
	}
	return &HostGW{log: log.With("component", "host-gw"), h: h, routes: map[string]*netlink.Route{}}, nil
}

// routeFromNode reads the route to a Node's pods: spec.podCIDR via its
// InternalIP. A node missing either is ErrNotReady.
func routeFromNode(n *apiv1.Node) (*netlink.Route, error) {
	name := n.GetMetadata().GetName()
	var ip net.IP
	for _, a := range n.GetStatus().GetAddresses() {
		if a.GetType() == "InternalIP" {
			if ip = net.ParseIP(a.GetAddress()).To4(); ip == nil {
				return nil, fmt.Errorf("%w: node %q: InternalIP %q is not an IPv4 address", ErrBadPeer, name, a.GetAddress())
			}
			break
		}
	}
	cidr := n.GetSpec().GetPodCIDR()
	if ip == nil || cidr == "" {
		return nil, fmt.Errorf("%w: node %q (InternalIP %v, podCIDR %q)", ErrNotReady, name, ip, cidr)
	}
	_, dst, err := net.ParseCIDR(cidr)
	if err != nil || dst.IP.To4() == nil {
		return nil, fmt.Errorf("%w: node %q: spec.podCIDR %q is not an IPv4 range", ErrBadPeer, name, cidr)
	}
	return &netlink.Route{Dst: dst, Gw: ip, Scope: netlink.SCOPE_UNIVERSE}, nil
}

// SetRoute programs the route of the named peer, replacing an older one
// (another address or range) first.
func (g *HostGW) SetRoute(name string, r *netlink.Route) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if old, ok := g.routes[name]; ok {
		if old.Dst.String() == r.Dst.String() && old.Gw.Equal(r.Gw) {
			return nil
		}
		if err := g.h.RouteDel(old); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("host-gw: remove old route %s via %s of %q: %w", old.Dst, old.Gw, name, err)
		}
		delete(g.routes, name)
	}
	if err := g.h.RouteReplace(r); err != nil {
		if errors.Is(err, unix.ENETUNREACH) {
			return fmt.Errorf("host-gw: route %s via %s for %q: %w (host-gw needs every node on one L2 network; use --pod-network vxlan)", r.Dst, r.Gw, name, err)
		}
		return fmt.Errorf("host-gw: route %s via %s for %q: %w", r.Dst, r.Gw, name, err)
	}
	g.routes[name] = r
	g.log.Info("peer route programmed", "node", name, "podCIDR", r.Dst, "via", r.Gw)
	return nil
}

// RemoveRoute deletes the named peer's route (none: no-op).
func (g *HostGW) RemoveRoute(name string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.routes[name]
	if !ok {
		return nil
	}
	if err := g.h.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("host-gw: remove route %s via %s of %q: %w", r.Dst, r.Gw, name, err)
	}
	delete(g.routes, name)
	g.log.Info("peer route removed", "node", name, "podCIDR", r.Dst)
	return nil
}

// Routes are the programmed routes by peer name (copies).
func (g *HostGW) Routes() map[string]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]string, len(g.routes))
	for n, r := range g.routes {
		out[n] = r.Dst.String() + " via " + r.Gw.String()
	}
	return out
}

// Handler keeps the routes in step with a Node informer: every Node but
// self with an address and a range has its route; one deleted or losing
// either has it removed. Errors are logged (the next event retries).
func (g *HostGW) Handler(self string) client.EventHandler {
	apply := func(obj client.Object) {
		n, ok := obj.(*apiv1.Node)
		name := n.GetMetadata().GetName()
		if !ok || name == self {
			return
		}
		r, err := routeFromNode(n)
		if err != nil {
			if !errors.Is(err, ErrNotReady) {
				g.log.Warn("node is no peer", "err", err)
			}
			if err := g.RemoveRoute(name); err != nil {
				g.log.Error("remove peer route", "node", name, "err", err)
			}
			return
		}
		if err := g.SetRoute(name, r); err != nil {
			g.log.Error("program peer route", "node", name, "err", err)
		}
	}
	return client.EventHandler{
		OnAdd:    apply,
		OnUpdate: func(_, cur client.Object) { apply(cur) },
		OnDelete: func(obj client.Object) {
			name := obj.GetMetadata().GetName()
			if name == self {
				return
			}
			if err := g.RemoveRoute(name); err != nil {
				g.log.Error("remove peer route", "node", name, "err", err)
			}
		},
	}
}

// Run keeps the routes in step with all Nodes (an informer over c) until
// ctx ends.
func (g *HostGW) Run(ctx context.Context, c *client.Client, nodeName string) error {
	inf := client.NewInformer(c, "Node", client.ListOptions{}, g.Handler(nodeName))
	if err := inf.Run(ctx); err != nil && ctx.Err() == nil {
		return fmt.Errorf("host-gw: Node informer: %w", err)
	}
	return nil
}

// Close releases the netlink handle; the routes stay (pods keep their
// connectivity across an agent restart; the next agent re-programs).
func (g *HostGW) Close() { g.closeOnce.Do(g.h.Close) }
