package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/skiffhq/skiff/agent"
	"github.com/skiffhq/skiff/agent/network"
	"github.com/skiffhq/skiff/agent/network/overlay"
	"github.com/skiffhq/skiff/proto/client"
)

// podNetworkEnv is what a --pod-network mode gets to set itself up.
type podNetworkEnv struct {
	ctx         context.Context
	nodeName    string
	nodeIP      netip.Addr
	clusterCIDR string
	client      *client.Client
	log         *slog.Logger
}

// podNetworkMode adjusts the CNI config before the network manager exists,
// and wraps the manager's SetPodCIDR to set up the cross-node network once
// the node's range is known.
type podNetworkMode struct {
	// needsClusterRange: the mode masquerades only what leaves the cluster
	// range, so the agent learns it (or takes --cluster-cidr) first.
	needsClusterRange bool
	configure         func(env podNetworkEnv, c *network.Config) error
	wrap              func(env podNetworkEnv, nets *network.Manager) agent.PodNetwork
}

// podNetworkModes are the values of --pod-network.
var podNetworkModes = map[string]podNetworkMode{
	// none: pods reach only pods on this node (or routes made by hand).
	"none": {
		configure: func(podNetworkEnv, *network.Config) error { return nil },
		wrap:      func(_ podNetworkEnv, nets *network.Manager) agent.PodNetwork { return nets },
	},
	"vxlan": {needsClusterRange: true, configure: configureVXLAN, wrap: wrapVXLAN},
	// host-gw: a route to each peer's range via its node IP (one L2).
	"host-gw": {needsClusterRange: true, configure: configureHostGW, wrap: wrapHostGW},
}

// defaultPodNetwork is --pod-network's default.
const defaultPodNetwork = "vxlan"

func podNetworkModeNames() string {
	names := make([]string, 0, len(podNetworkModes))
	for n := range podNetworkModes {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// configureVXLAN: no masquerade by the bridge plugin (EnsureMasquerade
// masquerades only what leaves the cluster range), pod MTU reduced by the
// VXLAN overhead.
func configureVXLAN(env podNetworkEnv, c *network.Config) error {
	if _, err := netip.ParsePrefix(env.clusterCIDR); err != nil {
		return fmt.Errorf("--pod-network vxlan needs --cluster-cidr (the whole pod network; only traffic leaving it is masqueraded): %q: %w", env.clusterCIDR, err)
	}
	mtu, err := overlay.UnderlayMTU(net.IP(env.nodeIP.AsSlice()))
	if err != nil {
		return fmt.Errorf("--pod-network vxlan: %w", err)
	}
	c.IPMasq, c.MTU = false, mtu-overlay.Overhead
	return nil
}

// vxlanPodNetwork sets up the overlay when the node's range is given.
type vxlanPodNetwork struct {
	*network.Manager
	env  podNetworkEnv
	once sync.Once
	err  error
}

func wrapVXLAN(env podNetworkEnv, nets *network.Manager) agent.PodNetwork {
	return &vxlanPodNetwork{Manager: nets, env: env}
}

func (v *vxlanPodNetwork) SetPodCIDR(cidr string) error {
	if err := v.Manager.SetPodCIDR(cidr); err != nil {
		return err
	}
	v.once.Do(func() { v.err = v.start(cidr) })
	return v.err
}

func (v *vxlanPodNetwork) start(cidr string) error {
	pod, err := netip.ParsePrefix(cidr)
	if err != nil {
		return fmt.Errorf("pod range %q: %w", cidr, err)
	}
	cluster, err := netip.ParsePrefix(v.env.clusterCIDR)
	if err != nil {
		return fmt.Errorf("--cluster-cidr %q: %w", v.env.clusterCIDR, err)
	}
	if err := network.EnsureMasquerade(pod, cluster, -1); err != nil {
		return err
	}
	_, ipn, _ := net.ParseCIDR(cidr)
	o, err := overlay.New(overlay.Config{NodeIP: net.IP(v.env.nodeIP.AsSlice()), PodCIDR: ipn, Log: v.env.log})
	if err != nil {
		return err
	}
	go func() {
		defer o.Close()
		if err := o.Run(v.env.ctx, v.env.client, v.env.nodeName); err != nil {
			v.env.log.Error("pod network: the overlay stopped following Nodes; pods on other nodes stay as last programmed", "err", err)
		}
	}()
	v.env.log.Info("pod network: vxlan overlay up", "device", o.Device(), "mac", o.MAC().String(), "podCIDR", cidr, "clusterCIDR", cluster)
	return nil
}

// configureHostGW: no masquerade by the bridge plugin (only what leaves
// the cluster range is masqueraded); the pod MTU stays the underlay's.
func configureHostGW(env podNetworkEnv, c *network.Config) error {
	if _, err := netip.ParsePrefix(env.clusterCIDR); err != nil {
		return fmt.Errorf("--pod-network host-gw needs the cluster range (only traffic leaving it is masqueraded): %q: %w", env.clusterCIDR, err)
	}
	c.IPMasq = false
	return nil
}

// hostGWPodNetwork programs the peer routes when the node's range is given.
type hostGWPodNetwork struct {
	*network.Manager
	env  podNetworkEnv
	once sync.Once
	err  error
}

func wrapHostGW(env podNetworkEnv, nets *network.Manager) agent.PodNetwork {
	return &hostGWPodNetwork{Manager: nets, env: env}
}

func (h *hostGWPodNetwork) SetPodCIDR(cidr string) error {
	if err := h.Manager.SetPodCIDR(cidr); err != nil {
		return err
	}
	h.once.Do(func() { h.err = h.start(cidr) })
	return h.err
}

func (h *hostGWPodNetwork) start(cidr string) error {
	pod, err := netip.ParsePrefix(cidr)
	if err != nil {
		return fmt.Errorf("pod range %q: %w", cidr, err)
	}
	cluster, err := netip.ParsePrefix(h.env.clusterCIDR)
	if err != nil {
		return fmt.Errorf("cluster range %q: %w", h.env.clusterCIDR, err)
	}
	if err := network.EnsureMasquerade(pod, cluster, -1); err != nil {
		return err
	}
	g, err := overlay.NewHostGW("", h.env.log)
	if err != nil {
		return err
	}
	go func() {
		defer g.Close()
		if err := g.Run(h.env.ctx, h.env.client, h.env.nodeName); err != nil {
			h.env.log.Error("pod network: host-gw stopped following Nodes; routes stay as last programmed", "err", err)
		}
	}()
	h.env.log.Info("pod network: host-gw routes follow the Nodes", "podCIDR", cidr, "clusterCIDR", cluster)
	return nil
}

// learnClusterRange waits for the cluster's pod range from learn (the
// control nodes' gossip metadata, read from the store), logging while it
// is not known yet.
func learnClusterRange(ctx context.Context, learn func(context.Context) (string, error), log *slog.Logger) (string, error) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	lastLog := start
	for {
		cidr, err := learn(ctx)
		if err == nil && cidr != "" {
			if _, perr := netip.ParsePrefix(cidr); perr != nil {
				return "", fmt.Errorf("the cluster range the control nodes announce, %q: %w", cidr, perr)
			}
			return cidr, nil
		}
		if time.Since(lastLog) > 15*time.Second {
			lastLog = time.Now()
			log.Warn("pod network: waiting for the cluster range from the control nodes (gossip)", "waited", time.Since(start).Round(time.Second), "err", err)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-tick.C:
		}
	}
}
