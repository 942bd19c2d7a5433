package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiffhq/skiff/agent/gossip"
	"github.com/skiffhq/skiff/controlplane/node"
)

// gossipMembership wires agent/gossip into a node (controlplane/node may
// not import agent/): every member listens on port, and joins at the same
// port on the hosts of the control nodes' API addresses.
func gossipMembership(port int, log *slog.Logger, reg prometheus.Registerer) node.MembershipFactory {
	return func(info node.MemberInfo) (node.Membership, error) {
		meta := gossip.Meta{Role: info.Role, Node: info.Name, IP: info.Advertise, APIAddress: info.APIAddress}
		bind := info.BindAddress
		if bind == "" {
			bind = "0.0.0.0"
		}
		advertise := ""
		if net.ParseIP(info.Advertise) != nil {
			advertise = info.Advertise
		}
		g, err := gossip.Start(gossip.Config{Name: info.Name, BindAddr: bind, BindPort: port, AdvertiseAddr: advertise,
			Key: info.Key, Meta: meta, Logger: log})
		if err != nil {
			return nil, err
		}
		if err := registerGossipMetrics(reg, g); err != nil {
			_ = g.Leave(0)
			return nil, err
		}
		return &member{g: g, port: port, seeds: info.Seeds, podCIDR: info.PodCIDR, clusterCIDR: info.ClusterCIDR, meta: meta, log: log}, nil
	}
}

type member struct {
	g     *gossip.Gossip
	port  int
	seeds func(context.Context) ([]string, error)
	// podCIDR is polled until the node has a pod range (it never changes
	// once given), which then joins meta.
	podCIDR func(context.Context) (string, error)
	// clusterCIDR (control nodes) is polled the same way.
	clusterCIDR func(context.Context) (string, error)
	meta        gossip.Meta
	log         *slog.Logger
}

func (m *member) DeadSince(name string) (time.Time, bool) { return m.g.DeadSince(name) }

// ApplyKeys sets the member's key ring (keys[0] encrypts).
func (m *member) ApplyKeys(keys [][]byte) error { return m.g.ApplyKeys(keys, 2*time.Second) }

// KeyHolders counts the live members holding each key fingerprint.
func (m *member) KeyHolders() (holders, primaries map[string]int, members int) {
	holders, primaries = map[string]int{}, map[string]int{}
	for _, x := range m.g.Members() {
		if x.State != gossip.StateAlive {
			continue
		}
		members++
		for i, f := range strings.Split(x.Meta.Keys, ",") {
			holders[f]++
			if i == 0 {
				primaries[f]++
			}
		}
	}
	return holders, primaries, members
}

// Stats are this member's counters (members by state, deaths seen, keys),
// for whoever exports metrics.
func (m *member) Stats() gossip.Stats { return m.g.Stats() }

// ControlNodes are the live members whose metadata says control node.
func (m *member) ControlNodes() []node.ControlMember {
	var out []node.ControlMember
	for _, x := range m.g.Members() {
		if x.State == gossip.StateAlive && x.Meta.Role == gossip.RoleControl {
			out = append(out, node.ControlMember{Name: x.Name, APIAddress: x.Meta.APIAddress, ClusterCIDR: x.Meta.ClusterCIDR})
		}
	}
	return out
}

// Run joins through the control nodes, retrying every 2 s while this
// member knows no other live member (the first control node, or all
// others down), and leaves when ctx ends.
func (m *member) Run(ctx context.Context) error {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		if m.alone() {
			m.join(ctx)
		}
		m.learn(ctx, m.podCIDR, func(meta *gossip.Meta) *string { return &meta.PodCIDR }, "pod range of this node")
		m.learn(ctx, m.clusterCIDR, func(meta *gossip.Meta) *string { return &meta.ClusterCIDR }, "cluster pod range")
		select {
		case <-ctx.Done():
			return m.g.Leave(2 * time.Second)
		case <-tick.C:
		}
	}
}

// learn fills one metadata field, while it is empty, from get (a value
// that never changes once there is one: a pod range) and tells the others.
func (m *member) learn(ctx context.Context, get func(context.Context) (string, error), field func(*gossip.Meta) *string, what string) {
	if get == nil || *field(&m.meta) != "" {
		return
	}
	v, err := get(ctx)
	if err != nil || v == "" {
		if err != nil {
			m.log.Debug(what, "err", err)
		}
		return
	}
	next := m.meta
	*field(&next) = v
	if err := m.g.SetMeta(next, 2*time.Second); err != nil {
		m.log.Warn("gossip metadata", "err", err)
		return
	}
	m.meta = next
}

func (m *member) alone() bool {
	for _, x := range m.g.Members() {
		if x.Name != m.g.Name() && x.State == gossip.StateAlive {
			return false
		}
	}
	return true
}

func (m *member) join(ctx context.Context) {
	apis, err := m.seeds(ctx)
	if err != nil {
		m.log.Debug("gossip seeds", "err", err)
		return
	}
	var addrs []string
	for _, a := range apis {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		addr := net.JoinHostPort(host, strconv.Itoa(m.port))
		if addr != m.g.Addr() {
			addrs = append(addrs, addr)
		}
	}
	if len(addrs) == 0 {
		return
	}
	if n, err := m.g.Join(addrs...); err != nil && !errors.Is(err, context.Canceled) {
		m.log.Warn("gossip join", "seeds", addrs, "err", err)
	} else {
		m.log.Info("gossip joined", "answered", n)
	}
}

// gossipPortFree binds the gossip port (TCP and UDP, as memberlist will)
// and lets it go: a port another process holds is refused with the flags
// that fix it instead of failing after the node has joined.
func gossipPortFree(bind string, port int) error {
	if bind == "" {
		bind = "0.0.0.0"
	}
	addr := net.JoinHostPort(bind, strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err == nil {
		_ = l.Close()
		var pc net.PacketConn
		pc, err = net.ListenPacket("udp", addr)
		if err == nil {
			_ = pc.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("--gossip-port %d: %s is taken (another node on this host?): pass another --gossip-port, the same on every node, or --gossip=false: %w", port, addr, err)
	}
	return nil
}
