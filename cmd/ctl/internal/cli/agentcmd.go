package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skiffhq/skiff/agent"
	"github.com/skiffhq/skiff/agent/image"
	"github.com/skiffhq/skiff/agent/network"
	"github.com/skiffhq/skiff/agent/runtime"
	"github.com/skiffhq/skiff/netproxy"
	"github.com/skiffhq/skiff/netproxy/apifeed"
)

// agentFlags are the flags of `ctl agent`.
type agentFlags struct {
	nodeName, dataDir, podCIDR, nodeIP, netns string
	clusterCIDR, proxyBackend, logLevel       string
	cniConfDir, bridge, cgroupRoot            string
	insecureRegistries                        []string
	labels                                    map[string]string
	noProxy                                   bool
	podNetwork                                string
}

func (o *options) agentCmd() *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run this machine as a worker: its Node, the pods bound to it, and the Service proxy (foreground)",
		Long: `Run the worker agent in the foreground. It registers (or adopts) the Node
--node-name with the cluster API using the client config given by --config
(a certificate for node:<name>), heartbeats by renewing its Lease in
kube-node-lease (the full status only when it changes, or each minute),
runs the pods bound to it with libcontainer, and programs Services into the
kernel (IPVS, or nftables where the kernel has none). Stopping the agent leaves pods running: the next
agent on the same --data-dir adopts them.

The node's pod range is the control plane's to give (Node spec.podCIDR,
from ctl init's --cluster-cidr): the agent waits for it, then starts pods.
Everything the agent keeps (images, pod state, pod network namespaces, CNI
state) is under --data-dir, so two agents on one machine need two.

Needs root and containernetworking-plugins (/usr/lib/cni).`,
		Example: `  ctl agent --config /etc/skiff/node.conf --node-name w1 --node-ip 192.168.10.21`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := untilSignal(cmd.Context())
			defer stop()
			return o.runAgent(ctx, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.nodeName, "node-name", "", "this node's name (default: the host name); the certificate must be node:<name>")
	fl.StringVar(&f.dataDir, "data-dir", "/var/lib/skiff/agent", "images, pod state, volumes, logs and CNI state")
	fl.StringVar(&f.podCIDR, "pod-cidr", "", "only a check: the pod range this node must have been assigned (the control plane assigns it; another one stops the agent)")
	fl.StringVar(&f.nodeIP, "node-ip", "", "this node's InternalIP (default: the first global IPv4 address)")
	fl.StringVar(&f.netns, "netns", "", "network namespace path the Service proxy programs (default: the agent's own)")
	fl.StringVar(&f.clusterCIDR, "cluster-cidr", "", "the whole pod network (all nodes' pod CIDRs); ClusterIP traffic from outside it is masqueraded")
	fl.StringVar(&f.proxyBackend, "proxy-backend", netproxy.BackendAuto, "auto, ipvs or nftables")
	fl.BoolVar(&f.noProxy, "no-proxy", false, "do not run the Service proxy")
	fl.StringVar(&f.cniConfDir, "cni-conf-dir", network.DefaultConfig().ConfDir, "a *.conflist here replaces the built-in bridge network")
	fl.StringVar(&f.podNetwork, "pod-network", "none", "pods on other nodes: vxlan (an overlay, needs --cluster-cidr) or none")
	fl.StringVar(&f.bridge, "bridge", network.DefaultConfig().BridgeName, "the pod bridge of the built-in network")
	fl.StringSliceVar(&f.insecureRegistries, "insecure-registry", nil, "registries (host:port) pulled over plain HTTP")
	fl.StringVar(&f.cgroupRoot, "cgroup-root", runtime.DefaultConfig().CgroupRoot, "absolute cgroup parent of this agent's pods (one per agent on a shared host)")
	fl.StringToStringVar(&f.labels, "node-labels", nil, "labels added to the Node (key=value,…)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func (o *options) runAgent(ctx context.Context, f agentFlags) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return errors.New("--log-level " + f.logLevel + ": want debug, info, warn or error")
	}
	log := slog.New(slog.NewTextHandler(o.streams.Err, &slog.HandlerOptions{Level: level}))
	if f.podCIDR != "" {
		if _, err := netip.ParsePrefix(f.podCIDR); err != nil {
			return fmt.Errorf("--pod-cidr %q: %w", f.podCIDR, err)
		}
	}
	if f.nodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("--node-name not given and no host name: %w", err)
		}
		f.nodeName = strings.ToLower(h)
	}
	var nodeIP netip.Addr
	if f.nodeIP != "" {
		ip, err := netip.ParseAddr(f.nodeIP)
		if err != nil {
			return fmt.Errorf("--node-ip %q: %w", f.nodeIP, err)
		}
		nodeIP = ip
	} else {
		ip, err := agent.DetectNodeIP(f.bridge, "veth", "cni", "skiff")
		if err != nil {
			return fmt.Errorf("%w (pass --node-ip)", err)
		}
		nodeIP = ip
	}
	c, err := o.connect()
	if err != nil {
		return err
	}
	defer c.Close()

	imgCfg := image.DefaultConfig()
	imgCfg.Root = filepath.Join(f.dataDir, "images")
	imgCfg.InsecureRegistries = f.insecureRegistries
	imgCfg.Logger = log
	images, err := image.New(imgCfg)
	if err != nil {
		return err
	}
	podNet, ok := podNetworkModes[f.podNetwork]
	if !ok {
		return fmt.Errorf("--pod-network %q: want one of %s", f.podNetwork, podNetworkModeNames())
	}
	podNetEnv := podNetworkEnv{ctx: ctx, nodeName: f.nodeName, nodeIP: nodeIP, clusterCIDR: f.clusterCIDR, client: c, log: log}
	netCfg := agentNetworkConfig(f)
	if err := podNet.configure(podNetEnv, &netCfg); err != nil {
		return err
	}
	nets, err := network.New(netCfg)
	if err != nil {
		return err
	}
	rtCfg := agentRuntimeConfig(f)
	rtCfg.Images, rtCfg.Network, rtCfg.Logger = images, nets, log
	rt, err := runtime.New(ctx, rtCfg)
	if err != nil {
		return err
	}
	defer rt.Close() // pods keep running; the next agent adopts them

	cfg := agent.DefaultConfig()
	cfg.NodeName, cfg.Client, cfg.Runtime = f.nodeName, c, rt
	cfg.Images, cfg.PodNetwork = images, podNet.wrap(podNetEnv, nets)
	cfg.PodCIDR, cfg.NodeIP, cfg.Labels, cfg.Logger = f.podCIDR, nodeIP, f.labels, log
	if !f.noProxy {
		pc := netproxy.DefaultConfig()
		pc.NetNSPath, pc.Backend, pc.Logger = f.netns, f.proxyBackend, log
		if f.clusterCIDR != "" {
			if pc.ClusterCIDR, err = netip.ParsePrefix(f.clusterCIDR); err != nil {
				return fmt.Errorf("--cluster-cidr %q: %w", f.clusterCIDR, err)
			}
		}
		proxy, err := netproxy.New(pc)
		if err != nil {
			return err
		}
		defer proxy.Close() // kernel state stays: traffic flows across restarts
		cfg.Proxy = apifeed.New(c, proxy, log)
	}
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	log.Info("agent starting", "node", f.nodeName, "nodeIP", nodeIP, "podCIDR", nets.PodCIDR(), "dataDir", f.dataDir)
	return a.Run(ctx)
}

// agentNetworkConfig is the pod network of an agent: its state (CNI cache,
// host-local's allocations and recorded range) and its pod network
// namespaces under --data-dir, so a second agent on the machine (another
// data dir) never lists, and never sweeps, this one's.
func agentNetworkConfig(f agentFlags) network.Config {
	c := network.DefaultConfig()
	c.ConfDir = f.cniConfDir
	c.CacheDir = filepath.Join(f.dataDir, "cni", "cache")
	c.IPAMDataDir = filepath.Join(f.dataDir, "cni", "networks")
	c.NetnsDir = filepath.Join(f.dataDir, "netns")
	c.BridgeName = f.bridge
	return c
}

// agentRuntimeConfig is the runtime's part of the agent's layout.
func agentRuntimeConfig(f agentFlags) runtime.Config {
	c := runtime.DefaultConfig()
	c.StateDir = filepath.Join(f.dataDir, "pods")
	c.CgroupRoot = f.cgroupRoot
	return c
}
