package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/skiffhq/skiff/agent"
	"github.com/skiffhq/skiff/agent/image"
	"github.com/skiffhq/skiff/agent/network"
	"github.com/skiffhq/skiff/agent/probe"
	"github.com/skiffhq/skiff/agent/runtime"
	"github.com/skiffhq/skiff/agent/streams"
	"github.com/skiffhq/skiff/controlplane/node"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/netproxy"
	"github.com/skiffhq/skiff/netproxy/apifeed"
	"github.com/skiffhq/skiff/netproxy/clusterdns"
	"github.com/skiffhq/skiff/netproxy/netpol"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/logkey"
)

// agentFlags are the flags of `ctl agent`.
type agentFlags struct {
	nodeName, dataDir, podCIDR, nodeIP, netns string
	clusterCIDR, proxyBackend                 string
	cniConfDir, bridge, cgroupRoot            string
	insecureRegistries                        []string
	labels                                    map[string]string
	noProxy                                   bool
	podNetwork                                string
	streamPort                                int
	resolvConf                                string
	ingressHTTP, ingressHTTPS                 int
	ingressFlags                              *pflag.FlagSet // which ingress ports the operator chose
}

func (o *options) agentCmd() *cobra.Command {
	var f agentFlags
	var lf logFlags
	var metricsAddr string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run this machine as a worker: its Node, the pods bound to it, and the Service proxy (foreground)",
		Long: `Run the worker agent in the foreground. ` + "`ctl join`" + ` (worker) runs this
agent itself; ctl agent is for a worker whose certificate another process
holds. It registers (or adopts) the Node its client config (--config, a
certificate for node:<name>) is for, heartbeats by renewing its Lease in
kube-node-lease (the full status only when it changes, or each minute),
runs the pods bound to it with libcontainer, and programs Services into the
kernel (IPVS, or nftables where the kernel has none). Stopping the agent leaves pods running: the next
agent on the same --data-dir adopts them.

With the proxy it answers cluster DNS at the kube-dns Service's address
(10.96.0.10), which it holds itself, for its pods and the node only; other
names go to the resolvers of --resolv-conf. Pods get /etc/resolv.conf by
their dnsPolicy.

The node's pod range is the control plane's to give (Node spec.podCIDR,
from ctl init's --cluster-cidr): the agent waits for it, then starts pods.
Everything the agent keeps (images, pod state, pod network namespaces, CNI
state) is under --data-dir, so two agents on one machine need two.

Needs root and containernetworking-plugins (/usr/lib/cni).`,
		Example: `  ctl agent --config /var/lib/skiff/node.conf --node-ip 192.168.10.21`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := untilSignal(cmd.Context())
			defer stop()
			return o.runAgent(ctx, f, lf, metricsAddr)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.nodeName, "node-name", "", "this node's name (default: the name in the --config certificate, node:<name>; another one is refused)")
	fl.StringVar(&f.dataDir, "data-dir", "/var/lib/skiff/agent", "images, pod state, volumes, logs and CNI state")
	lf.add(fl)
	fl.StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus metrics as plain HTTP at this host:port (anyone who reaches it may read them: bind to loopback or a monitoring network)")
	f.add(fl)
	return cmd
}

// add registers the flags an agent has under both ctl agent and ctl join
// (worker): everything but its name, data dir and log level, which ctl
// join takes from the node.
func (f *agentFlags) add(fl *pflag.FlagSet) {
	fl.StringVar(&f.podCIDR, "pod-cidr", "", "only a check: the pod range this node must have been assigned (the control plane assigns it; another one stops the agent)")
	fl.StringVar(&f.nodeIP, "node-ip", "", "this node's InternalIP (default: ctl join's --advertise when an IP, else the first global IPv4 address)")
	fl.StringVar(&f.netns, "netns", "", "network namespace path the Service proxy programs (default: the agent's own)")
	fl.StringVar(&f.clusterCIDR, "cluster-cidr", "", "the whole pod network (all nodes' pod CIDRs), when not learned from the control nodes (ctl join learns it through gossip); ClusterIP traffic from outside it is masqueraded")
	fl.StringVar(&f.proxyBackend, "proxy-backend", netproxy.BackendAuto, "auto, ipvs or nftables")
	fl.BoolVar(&f.noProxy, "no-proxy", false, "do not run the Service proxy (nor the node's cluster DNS)")
	fl.StringVar(&f.resolvConf, "resolv-conf", "/etc/resolv.conf", "the node's resolv.conf: upstream resolvers of the cluster DNS, and pods' file under dnsPolicy Default (\"\": none)")
	addIngressFlags(fl, f)
	fl.StringVar(&f.cniConfDir, "cni-conf-dir", network.DefaultConfig().ConfDir, "a *.conflist here replaces the built-in bridge network")
	fl.StringVar(&f.podNetwork, "pod-network", defaultPodNetwork, "pods on other nodes: vxlan (an overlay), host-gw (a route to each node's pods via its IP; all nodes on one L2 network) or none; vxlan and host-gw masquerade only what leaves the cluster range, which ctl join learns from the control nodes (ctl agent: give --cluster-cidr)")
	fl.StringVar(&f.bridge, "bridge", network.DefaultConfig().BridgeName, "the pod bridge of the built-in network")
	fl.StringSliceVar(&f.insecureRegistries, "insecure-registry", nil, "registries (host:port) pulled over plain HTTP")
	fl.StringVar(&f.cgroupRoot, "cgroup-root", runtime.DefaultConfig().CgroupRoot, "absolute cgroup parent of this agent's pods (one per agent on a shared host)")
	fl.StringToStringVar(&f.labels, "node-labels", nil, "labels added to the Node (key=value,…)")
	fl.IntVar(&f.streamPort, "stream-port", streams.DefaultPort, "port at --node-ip of the stream server (logs, exec, attach, port-forward) that only control nodes may call; 0: none")
}

// runAgent is ctl agent: the agent of the node whose certificate --config
// holds, reading the config's files again at each handshake (rereadTLS).
func (o *options) runAgent(ctx context.Context, f agentFlags, lf logFlags, metricsAddr string) error {
	log, err := lf.logger(o.streams.Err)
	if err != nil {
		return err
	}
	cc, err := o.loadConfig()
	if err != nil {
		return err
	}
	if f.nodeName, err = agentNodeName(cc, f.nodeName); err != nil {
		return err
	}
	log = log.With(logkey.Node, f.nodeName)
	tc, err := newRereadTLS(cc)
	if err != nil {
		return err
	}
	co := client.DefaultOptions()
	co.Servers, co.TLS, co.Logger = cc.Servers, tc.Config(), log
	c, err := client.New(co)
	if err != nil {
		return err
	}
	defer c.Close()
	reg := node.NewMetricsRegistry()
	if metricsAddr == "" {
		return runAgentWith(ctx, f, c, nil, tc.StreamServerConfig(), log, reg)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	metricsErr := make(chan error, 1)
	go func() { metricsErr <- node.ListenAndServeMetrics(ctx, metricsAddr, reg, log) }()
	err = runAgentWith(ctx, f, c, nil, tc.StreamServerConfig(), log, reg)
	cancel()
	if merr := <-metricsErr; err == nil {
		err = merr
	}
	return err
}

// agentNodeName is the node an agent runs: the one its client certificate
// is for (node:<name>). flagName, when given, must be that name: the API
// refuses a node's writes to another node's objects, so a mismatch could
// only fail later and less clearly.
func agentNodeName(cc *client.Config, flagName string) (string, error) {
	tc, err := cc.TLS()
	if err != nil {
		return "", err
	}
	if len(tc.Certificates) == 0 || len(tc.Certificates[0].Certificate) == 0 {
		return "", errors.New("the client config holds no client certificate")
	}
	leaf, err := x509.ParseCertificate(tc.Certificates[0].Certificate[0])
	if err != nil {
		return "", fmt.Errorf("the client config's certificate: %w", err)
	}
	id, err := pki.IdentityFromCert(leaf)
	if err != nil {
		return "", fmt.Errorf("the client config's certificate: %w", err)
	}
	if id.Role != pki.RoleNode {
		return "", fmt.Errorf("the client config's certificate is for %s, not a node: an agent needs a worker's node.conf (node:<name>)", id)
	}
	if flagName != "" && flagName != id.Name {
		return "", fmt.Errorf("--node-name %q: the client config's certificate is for node %q (leave --node-name out, or use that node's node.conf)", flagName, id.Name)
	}
	return id.Name, nil
}

// joinAgent is the agent ctl join runs in the worker's process, with the
// node's client (the renewer's current certificate and CAs) and its state
// under <data-dir>/agent.
func joinAgent(f agentFlags) node.WorkerFunc {
	return func(ctx context.Context, env node.WorkerEnv) error {
		f.nodeName, f.dataDir = env.Name, filepath.Join(env.DataDir, "agent")
		if f.nodeIP == "" {
			if ip, err := netip.ParseAddr(env.Advertise); err == nil {
				f.nodeIP = ip.String()
			}
		}
		return runAgentWith(ctx, f, env.Client, env.ClusterCIDR, env.StreamTLS, env.Logger, env.Registerer)
	}
}

// check reports the first malformed flag, so that ctl join refuses it
// before joining.
func (f agentFlags) check() error {
	if f.podCIDR != "" {
		if _, err := netip.ParsePrefix(f.podCIDR); err != nil {
			return fmt.Errorf("--pod-cidr %q: %w", f.podCIDR, err)
		}
	}
	if f.clusterCIDR != "" {
		if _, err := netip.ParsePrefix(f.clusterCIDR); err != nil {
			return fmt.Errorf("--cluster-cidr %q: %w", f.clusterCIDR, err)
		}
	}
	if f.nodeIP != "" {
		if _, err := netip.ParseAddr(f.nodeIP); err != nil {
			return fmt.Errorf("--node-ip %q: %w", f.nodeIP, err)
		}
	}
	return nil
}

// runAgentWith runs the agent of node f.nodeName through c until ctx ends.
// clusterRange, when set (ctl join with gossip), tells the cluster's pod
// range when --cluster-cidr does not. Its stream server runs on
// --stream-port (TLS streamTLS; nil: none).
func runAgentWith(ctx context.Context, f agentFlags, c *client.Client, clusterRange func(context.Context) (string, error), streamTLS *tls.Config, log *slog.Logger, reg prometheus.Registerer) error {
	if err := f.check(); err != nil {
		return err
	}
	podNet, ok := podNetworkModes[f.podNetwork]
	if !ok {
		return fmt.Errorf("--pod-network %q: want one of %s", f.podNetwork, podNetworkModeNames())
	}
	if podNet.needsClusterRange && f.clusterCIDR == "" {
		if clusterRange == nil {
			return fmt.Errorf("--pod-network %s needs the cluster's pod range: give --cluster-cidr (ctl join with gossip learns it from the control nodes), or --pod-network none", f.podNetwork)
		}
		cidr, err := learnClusterRange(ctx, clusterRange, log)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		f.clusterCIDR = cidr
		log.Info("pod network: cluster range learned from the control nodes", "clusterCIDR", cidr)
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
	imgCfg := image.DefaultConfig()
	imgCfg.Root = filepath.Join(f.dataDir, "images")
	imgCfg.InsecureRegistries = f.insecureRegistries
	imgCfg.Logger, imgCfg.Registerer = log, reg
	images, err := image.New(imgCfg)
	if err != nil {
		return err
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
	rtCfg.ProbeMetrics = probe.NewMetrics(reg)
	rt, err := runtime.New(ctx, rtCfg)
	if err != nil {
		return err
	}
	defer rt.Close() // pods keep running; the next agent adopts them

	cfg := agent.DefaultConfig()
	cfg.NodeName, cfg.Client, cfg.Runtime, cfg.Registerer = f.nodeName, c, rt, reg
	cfg.Images, cfg.PodNetwork = images, podNet.wrap(podNetEnv, nets)
	cfg.PodCIDR, cfg.NodeIP, cfg.Labels, cfg.Logger = f.podCIDR, nodeIP, f.labels, log
	if !f.noProxy {
		pc := netproxy.DefaultConfig()
		pc.NetNSPath, pc.Backend, pc.Logger, pc.Registerer = f.netns, f.proxyBackend, log, reg
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
		policies, err := netpol.OpenProgrammer(f.netns)
		if err != nil {
			return err
		}
		defer policies.Close() // the table stays: policies hold across restarts
		dc := clusterdns.DefaultConfig()
		dc.NetNSPath, dc.ResolvConf, dc.Logger = f.netns, f.resolvConf, log
		if pc.ClusterCIDR.IsValid() {
			dc.PodRanges = []netip.Prefix{pc.ClusterCIDR}
		}
		dnsServer, err := clusterdns.New(c, dc)
		if err != nil {
			return err
		}
		cfg.Proxy = servicePath{apifeed.New(c, proxy, log), dnsServer, netpol.NewFeed(c, f.nodeName, policies, log)}
		cfg.ClusterDNS = clusterDNSSource(dnsServer)
	}
	if cfg.Proxy, err = withIngress(f, c, log, cfg.Proxy); err != nil {
		return err
	}
	if f.streamPort > 0 && streamTLS != nil {
		stop, err := serveStreams(ctx, net.JoinHostPort(nodeIP.String(), strconv.Itoa(f.streamPort)), streamTLS, rt, log)
		if err != nil {
			return err
		}
		defer stop()
		cfg.StreamPort = f.streamPort
	}
	cfg.ResolvConf = f.resolvConf
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	log.Info("agent starting", "node", f.nodeName, "nodeIP", nodeIP, "podCIDR", nets.PodCIDR(), "dataDir", f.dataDir)
	return a.Run(ctx)
}

// servicePath runs the node's Service proxy, its cluster DNS and its
// NetworkPolicy enforcement together.
type servicePath struct {
	proxy    *apifeed.Feed
	dns      *clusterdns.Server
	policies *netpol.Feed
}

func (s servicePath) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.proxy.Run(ctx) })
	g.Go(func() error { return s.dns.Run(ctx) })
	g.Go(func() error { return s.policies.Run(ctx) })
	return g.Wait()
}

// clusterDNSSource gives pods the cluster DNS the node's server follows,
// waiting at most 10 s for its first sync. Until the control plane has
// made kube-system/kube-dns (just after ctl init), a pod that asks for
// the cluster DNS waits (Pending, retried) rather than start without it.
func clusterDNSSource(s *clusterdns.Server) agent.ClusterDNSSource {
	return func(ctx context.Context) (agent.ClusterDNS, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		st, ok, err := s.Settings(ctx)
		if err != nil {
			return agent.ClusterDNS{}, err
		}
		if !ok {
			return agent.ClusterDNS{}, fmt.Errorf("the cluster DNS Service %s/%s has no address yet (the control plane makes it)", clusterdns.ServiceNamespace, clusterdns.ServiceName)
		}
		return agent.ClusterDNS{Nameserver: st.Nameserver, Domain: st.Domain}, nil
	}
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

// serveStreams starts the node's stream server on addr; stop ends it and
// waits for it.
func serveStreams(ctx context.Context, addr string, tlsCfg *tls.Config, rt *runtime.Runtime, log *slog.Logger) (stop func(), err error) {
	srv, err := streams.New(streams.Config{Runtime: rt, TLS: tlsCfg, AllowPeer: pki.ControlPeerOnly, Logger: log})
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("stream port: %w (--stream-port 0 runs none)", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ctx, lis); err != nil {
			log.Error("stream server stopped", "addr", addr, "err", err)
		}
	}()
	log.Info("stream server listening (control nodes only)", "addr", addr)
	return func() { cancel(); <-done }, nil
}
