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
	configure func(env podNetworkEnv, c *network.Config) error
	wrap      func(env podNetworkEnv, nets *network.Manager) agent.PodNetwork
}

// podNetworkModes are the values of --pod-network.
var podNetworkModes = map[string]podNetworkMode{
	// none: pods reach only pods on this node (or routes made by hand).
	"none": {
		configure: func(podNetworkEnv, *network.Config) error { return nil },
		wrap:      func(_ podNetworkEnv, nets *network.Manager) agent.PodNetwork { return nets },
	},
	"vxlan": {configure: configureVXLAN, wrap: wrapVXLAN},
}

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
