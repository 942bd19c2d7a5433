package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/skiffhq/skiff/agent/gossip"
	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane"
	"github.com/skiffhq/skiff/controlplane/clusternet"
	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/apiservice"
	"github.com/skiffhq/skiff/controlplane/controllers/builtin"
	"github.com/skiffhq/skiff/controlplane/controllers/dnsservice"
	"github.com/skiffhq/skiff/controlplane/controllers/nodelifecycle"
	"github.com/skiffhq/skiff/controlplane/controllers/podcidr"
	"github.com/skiffhq/skiff/controlplane/dashboard"
	"github.com/skiffhq/skiff/controlplane/node"
	"github.com/skiffhq/skiff/proto/client"
)

// nodeCommands are the verbs that run a node in the foreground (init,
// join, recover) and the cluster administration verbs (token, members,
// member, snapshot, user, node).
func (o *options) nodeCommands() []*cobra.Command {
	return []*cobra.Command{o.initCmd(), o.joinCmd(), o.recoverCmd(),
		o.tokenCmd(), o.membersCmd(), o.memberCmd(), o.snapshotCmd(), o.userCmd(), o.nodeCmd(), o.caCmd(), o.gossipCmd()}
}

// nodeFlags are the flags of commands that run a node.
type nodeFlags struct {
	dataDir, name, advertise, bind string
	apiPort, raftPort              int
	log                            logFlags
	// metricsPort: the mTLS metrics port (0: 7446 on a control node, 7447 on a worker; -1: none);
	// metricsAddr: plain HTTP metrics at an address of the operator's choice.
	metricsPort int
	metricsAddr string
	// Per-identity caps of the API server (api.Limits); 0 means default.
	maxWatches, maxStreams int
	gossip                 bool
	gossipPort             int
	dashboardPort          int
	raftLogStore           string
}

func (f *nodeFlags) add(cmd *cobra.Command, control bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", "/var/lib/skiff", "where this node keeps its state; restarting with the same dir resumes the node")
	fl.StringVar(&f.name, "name", "", "node name (default: the host name)")
	fl.StringVar(&f.advertise, "advertise", "", "host or IP other machines reach this node at (default: the first non-loopback IPv4 address)")
	fl.StringVar(&f.bind, "bind-address", "", "address the ports listen on (default 0.0.0.0)")
	f.dashboardPort = dashboard.DefaultPort // also for ctl recover, which takes its ports from node.json
	if control {
		fl.IntVar(&f.apiPort, "api-port", 0, "API port (default 7443)")
		fl.IntVar(&f.raftPort, "raft-port", 0, "store (Raft) port (default 7444)")
		fl.IntVar(&f.maxWatches, "max-watches-per-identity", 0, "concurrent watches one client identity may hold on this node's API (default 500; -1: no cap; control nodes are never capped)")
		fl.IntVar(&f.dashboardPort, "dashboard-port", dashboard.DefaultPort, "web dashboard port (HTTPS; `ctl dashboard` prints a login link; 0: none)")
		fl.StringVar(&f.raftLogStore, "raft-log-store", "", "Raft log store of a new control node: boltdb (default) or wal (hashicorp/raft-wal); the data dir records it, a restart keeps it")
		fl.IntVar(&f.maxStreams, "max-streams-per-identity", 0, "concurrent calls (unary, watches, streams) one client identity may hold on this node's API (default 2000; -1: no cap)")
		fl.IntVar(&f.metricsPort, "metrics-port", 0, "Prometheus metrics over mutual TLS for admin and control-node certificates (default: 7446 on a control node, 7447 on a worker; -1: none)")
	}
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", "also serve Prometheus metrics as plain HTTP at this host:port (anyone who reaches it may read them: bind to loopback or a monitoring network)")
	fl.BoolVar(&f.gossip, "gossip", true, "run a gossip member (hashicorp/memberlist, encrypted with the cluster's gossip key): the leader marks a worker that gossip confirms dead NotReady within 3 s, and workers learn the cluster's pod range and control nodes from it; every node of the cluster runs one (--gossip=false: none, then workers need --cluster-cidr for --pod-network)")
	fl.IntVar(&f.gossipPort, "gossip-port", gossip.DefaultPort, "gossip port (TCP and UDP), the same on every node: members join at this port on the control nodes' hosts")
	f.log.add(fl)
}

func (f *nodeFlags) config(o *options) (node.Config, error) {
	log, err := f.log.logger(o.streams.Err)
	if err != nil {
		return node.Config{}, err
	}
	cfg := node.DefaultConfig()
	cfg.DataDir, cfg.Name, cfg.Advertise, cfg.BindAddress = f.dataDir, f.name, f.advertise, f.bind
	// Zero ports mean "node.json's, else the default", so that a restart
	// without the flags resumes and a restart with other ports is refused.
	cfg.APIPort, cfg.RaftPort = f.apiPort, f.raftPort
	cfg.APILimits.WatchesPerIdentity, cfg.APILimits.StreamsPerIdentity = f.maxWatches, f.maxStreams
	if f.dashboardPort < 0 || f.dashboardPort > 65535 {
		return node.Config{}, fmt.Errorf("--dashboard-port %d: want 1-65535, or 0 for none", f.dashboardPort)
	}
	cfg.DashboardPort = f.dashboardPort
	if f.raftLogStore != "" {
		if _, err := consensus.ParseLogStore(f.raftLogStore); err != nil {
			return node.Config{}, fmt.Errorf("--raft-log-store: %w", err)
		}
	}
	cfg.RaftLogStore = f.raftLogStore
	cfg.Out = o.streams.Out
	cfg.Logger = log
	reg := node.NewMetricsRegistry()
	cfg.Registerer, cfg.Gatherer = reg, reg
	if f.metricsPort < -1 || f.metricsPort > 65535 {
		return node.Config{}, fmt.Errorf("--metrics-port %d: want 1-65535, or -1 for none", f.metricsPort)
	}
	cfg.MetricsPort, cfg.MetricsAddr = f.metricsPort, f.metricsAddr
	cfg.Loops = leaderLoops
	if f.gossip {
		if f.gossipPort <= 0 || f.gossipPort > 65535 {
			return node.Config{}, fmt.Errorf("--gossip-port %d: want 1-65535", f.gossipPort)
		}
		cfg.Membership = gossipMembership(f.gossipPort, cfg.Logger, reg)
	}
	return cfg, nil
}

// gossipPortFree is checked after the flags and before the node is
// created or joins: a control node that joined the store and then died on
// a taken gossip port would leave the cluster a dead member.
func (f *nodeFlags) gossipPortFree() error {
	if !f.gossip {
		return nil
	}
	return gossipPortFree(f.bind, f.gossipPort)
}

// leaderLoops builds the scheduler and every controller (the builtin
// registry) for the leader of a control node.
func leaderLoops(d node.LoopDeps) ([]controlplane.Loop, error) {
	pc := podcidr.DefaultConfig(d.Client)
	pc.Network = d.ClusterNetwork
	dc := dnsservice.DefaultConfig()
	dc.Network = d.ClusterNetwork
	ac := apiservice.DefaultConfig()
	ac.APIServers = d.APIServers
	deps := controllers.Deps{Client: d.Client, Node: d.Node, Logger: d.Logger, Registerer: d.Registerer,
		Informers: client.NewInformerFactory(d.Client), Sweeper: d.Sweeper, Configs: map[string]any{"podcidr": pc, "dnsservice": dc, "apiservice": ac}}
	if d.Members != nil {
		// Gossip's confirmed deaths are the node lifecycle's first signal.
		nl := nodelifecycle.DefaultConfig()
		nl.Members = d.Members
		deps.Configs["nodelifecycle"] = nl
	}
	return builtin.NewRegistry().Build(deps)
}

// untilSignal is ctx cancelled on SIGINT or SIGTERM.
func untilSignal(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

func (o *options) initCmd() *cobra.Command {
	var f nodeFlags
	net := clusternet.Default()
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a cluster with this machine as its first control node (runs in the foreground)",
		Long: `Create a cluster: the cluster CA, this node's certificate, an admin client
config (<data-dir>/admin.conf) and the replicated store. Prints the commands
that join control nodes and workers. Runs the control node until stopped;
running it again with the same --data-dir resumes the node.

Every worker's pod range (Node spec.podCIDR) is given by the control plane
from --cluster-cidr, one /--node-cidr-mask-size block per Node; both are
fixed when the cluster is created.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config(o)
			if err != nil {
				return err
			}
			cfg.ClusterNetwork = net
			if err := f.gossipPortFree(); err != nil {
				return err
			}
			ctx, stop := untilSignal(cmd.Context())
			defer stop()
			return node.Init(ctx, cfg)
		},
	}
	f.add(cmd, true)
	cmd.Flags().StringVar(&net.ClusterCIDR, "cluster-cidr", net.ClusterCIDR, "the range every pod address comes from (IPv4); each worker gets a part of it")
	cmd.Flags().IntVar(&net.NodeCIDRMaskSize, "node-cidr-mask-size", net.NodeCIDRMaskSize, "prefix length of each worker's pod range (24: 254 pods per worker)")
	cmd.Flags().StringVar(&net.ClusterDomain, "cluster-domain", net.ClusterDomain, "DNS domain of the cluster's names (<service>.<namespace>.svc.<domain>), answered by every node's cluster DNS")
	return cmd
}

func (o *options) joinCmd() *cobra.Command {
	var f nodeFlags
	var token string
	var control, runAgent bool
	var af agentFlags
	cmd := &cobra.Command{
		Use:   "join --token TOKEN [--control] ADDR",
		Short: "Join this machine to a cluster as a control node or a worker (runs in the foreground)",
		Long: `Join the cluster whose control node's API port is ADDR (host:port). The
token (from ctl init or ctl token create) pins the cluster CA: the CA is
checked before the token's secret is sent. Running it again with the same
--data-dir resumes the node (the token is then not used).

A worker runs its agent (pods, heartbeats, the Service proxy; see ctl agent)
in the same process once it is registered, as node:<--name> with the
certificate it keeps renewed; the agent keeps its state in <data-dir>/agent.
One command per worker: nothing else runs on it.

A worker's certificate is for client authentication only and names at most
its --advertise IP (when the join comes from that address). A worker may
not take the name (--name) of a Node that heartbeated in the last 40 s; to
re-join that machine, use a token from ` + "`ctl token create --node NAME`" + `.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := f.config(o)
			if err != nil {
				return err
			}
			if control {
				if err := refuseAgentFlags(cmd); err != nil {
					return err
				}
			}
			if !control && runAgent {
				if err := af.check(); err != nil {
					return err
				}
				cfg.Worker = joinAgent(af)
			}
			opts := node.JoinOptions{Token: token, Control: control}
			if len(args) == 1 {
				opts.Address = args[0]
			}
			if _, serr := node.LoadState(cfg.DataDir); serr != nil {
				switch {
				case opts.Address == "":
					return errors.New("ADDR (host:port of a control node's API) is required to join")
				case token == "":
					return errors.New("--token is required to join (see `ctl token create` on a control node)")
				}
			}
			if err := f.gossipPortFree(); err != nil {
				return err
			}
			ctx, stop := untilSignal(cmd.Context())
			defer stop()
			return node.Join(ctx, cfg, opts)
		},
	}
	f.add(cmd, true)
	cmd.Flags().StringVar(&token, "token", "", "join token (skiff1.…)")
	cmd.Flags().BoolVar(&control, "control", false, "join as a control node (store member and API server) instead of a worker")
	cmd.Flags().BoolVar(&runAgent, "agent", true, "worker: run the agent in this process (false: only hold the certificate and keep the Node registered)")
	af.add(cmd.Flags())
	return cmd
}

// refuseAgentFlags: a control node runs no agent, so an agent flag given
// to ctl join --control is a mistake, not something to ignore.
func refuseAgentFlags(cmd *cobra.Command) error {
	names := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	(&agentFlags{}).add(names)
	names.BoolVar(new(bool), "agent", true, "")
	var err error
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		if err == nil && names.Lookup(fl.Name) != nil {
			err = fmt.Errorf("--%s is a worker's (agent) flag: a control node (--control) runs no agent", fl.Name)
		}
	})
	return err
}

func (o *options) recoverCmd() *cobra.Command {
	var f nodeFlags
	cmd := &cobra.Command{
		Use:   "recover --data-dir DIR",
		Short: "After quorum is lost for good: rebuild a one-node cluster from this control node's data and run it",
		Long: `Quorum lost for good (most control nodes are gone): stop this node, then run
ctl recover with its data dir. The node becomes a one-node cluster keeping
every entry it has and keeps running. Never run it while other members of
the old cluster still run. The other control nodes rejoin with EMPTY data
dirs and a new control token.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("data-dir") {
				return errors.New("--data-dir is required: recover rewrites that node's store")
			}
			cfg, err := f.config(o)
			if err != nil {
				return err
			}
			ctx, stop := untilSignal(cmd.Context())
			defer stop()
			return node.Recover(ctx, cfg)
		},
	}
	f.add(cmd, false)
	return cmd
}
