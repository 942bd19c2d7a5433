package overlay

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Prune deletes the entries on the vxlan device that belong to no programmed
// peer: those of Nodes that went away while this agent was not running (the
// device and its entries outlive the agent). Call it once the Node informer
// has synced and its peers are set.
func (o *Overlay) Prune() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	idx := o.link.Attrs().Index
	ranges, gateways, fdbs := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, p := range o.peers {
		ranges[p.PodCIDR.String()] = true
		gateways[p.gateway().String()] = true
		fdbs[p.MAC.String()+"@"+p.NodeIP.String()] = true
	}
	var errs []error
	routes, err := o.h.RouteList(o.link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("overlay: list routes on %s: %w", o.cfg.Device, err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.Gw == nil || ranges[r.Dst.String()] {
			continue
		}
		if err := o.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("route %s: %w", r.Dst, err))
		} else {
			o.log.Info("stale route removed", "dst", r.Dst, "via", r.Gw)
		}
	}
	for family, keep := range map[int]func(n netlink.Neigh) bool{
		unix.AF_INET:   func(n netlink.Neigh) bool { return gateways[n.IP.String()] },
		unix.AF_BRIDGE: func(n netlink.Neigh) bool { return fdbs[n.HardwareAddr.String()+"@"+n.IP.String()] },
	} {
		neighs, err := o.h.NeighList(idx, family)
		if err != nil {
			return fmt.Errorf("overlay: list neighbours on %s: %w", o.cfg.Device, err)
		}
		for _, n := range neighs {
			if n.State&netlink.NUD_PERMANENT == 0 || n.IP == nil || keep(n) {
				continue
			}
			if err := o.h.NeighDel(&n); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("neighbour %s %s: %w", n.IP, n.HardwareAddr, err))
			} else {
				o.log.Info("stale entry removed", "ip", n.IP, "mac", n.HardwareAddr.String(), "fdb", family == unix.AF_BRIDGE)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("overlay: prune: %w", err)
	}
	return nil
}
