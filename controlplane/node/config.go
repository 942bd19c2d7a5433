package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane"
	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/clusternet"
	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/dashboard"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/controlplane/rbac"
	"github.com/skiffhq/skiff/proto/client"
)

// Default ports (docs/architecture.md, "Ports"). Nothing listens on the
// agent port yet: a worker's certificate names it for later use.
const (
	DefaultAPIPort   = 7443
	DefaultRaftPort  = 7444
	DefaultAgentPort = 7445
)

// APIServiceSANs are the names a control node's serving certificate
// carries besides its own address, so that a program in a pod verifies
// the API reached through the kubernetes Service (default/kubernetes,
// controllers/apiservice) against ca.crt as client-go does: the Service's
// ClusterIP (the first address of the default Service range) and its DNS
// names in the default cluster domain.
var APIServiceSANs = []string{kinds.KubernetesServiceIP, "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}

// LoopDeps is what leader-only loops are built from on a control node.
type LoopDeps struct {
	// Client talks to this node's API server as control:<name>.
	Client     *client.Client
	Node       string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Sweeper is this node's API server (the garbage collector's sweep).
	Sweeper controllers.DeletionSweeper
	// ClusterNetwork reads the cluster's pod network settings from the
	// store (clusternet.Default when the cluster was created without).
	ClusterNetwork func(context.Context) (clusternet.Network, error)
	// APIServers lists the current control nodes' API addresses
	// (host:port) from the store: the kubernetes Service's endpoints.
	APIServers func(context.Context) ([]string, error)
	// Members is the gossip membership's verdict on nodes; nil when this
	// node runs no gossip member (Config.Membership unset).
	Members interface {
		DeadSince(node string) (time.Time, bool)
	}
}

// LoopFactory builds the leader-only loops (scheduler, controllers).
type LoopFactory func(LoopDeps) ([]controlplane.Loop, error)

// Config configures a node. Fields left zero when resuming are taken from
// node.json; set ones must match it.
type Config struct {
	DataDir string
	// Name is the node's name (control:<name> / node:<name>); default: the
	// host name.
	Name string
	// Advertise is the host (IP or name) other machines reach this node at;
	// default: the first non-loopback address of the machine.
	Advertise string
	// BindAddress is where the ports listen (default 0.0.0.0).
	BindAddress string
	APIPort     int
	RaftPort    int
	// AgentPort is the advertised agent port of a worker (certificate SAN).
	AgentPort int
	// DashboardPort is where a control node serves the web dashboard
	// (HTTPS, on BindAddress; ctl's default is dashboard.DefaultPort,
	// 7448); 0 serves none. Dashboard adjusts its config (the usage and
	// log sources) before it starts.
	DashboardPort int
	Dashboard     func(*dashboard.Config)

	// Out receives the operator-facing lines (join commands, where the
	// admin config is).
	Out io.Writer
	// Loops, when set, builds the leader-only loops on control nodes.
	Loops LoopFactory
	// Membership, when set, runs this node's gossip member (cmd/ctl wires
	// agent/gossip); nil runs none.
	Membership MembershipFactory
	// Store tunes the store config (timeouts) before it opens.
	Store func(*consensus.Config)
	// RaftLogStore is the Raft log store of a new control node
	// (consensus.LogStoreBoltDB, the default when empty, or LogStoreWAL);
	// its data dir records it, and a restart naming the other is refused.
	RaftLogStore string

	NodeCertLifetime time.Duration
	// UserCertLifetime is the default lifetime of user certificates (and
	// the cap of their renewals).
	UserCertLifetime time.Duration
	// ServiceAccountMinTokenLifetime lowers the shortest service account
	// token lifetime (expirationSeconds) this control node mints, from
	// rbac.MinTokenLifetime (10 minutes, Kubernetes'), down to
	// rbac.MinTokenLifetimeFloor; 0 keeps it.
	ServiceAccountMinTokenLifetime time.Duration
	// NodeLiveWindow: a worker join under the name of a Node whose newest
	// heartbeat is younger than this is refused without a token bound to
	// that name (DefaultNodeLiveWindow when zero).
	NodeLiveWindow time.Duration
	// Renew is the renewal timing of node certificates.
	Renew pki.RenewerConfig
	// CAPollInterval is how often a worker asks a control node for the
	// cluster's CAs, to renew at once when a CA rotation has started.
	CAPollInterval time.Duration
	// RegistrationInterval is how often a control node checks its API
	// address record in the store.
	RegistrationInterval time.Duration
	// AuditMaxBytes rotates the audit log at this size.
	AuditMaxBytes int64
	// APILimits caps what one client identity holds open on this control
	// node's API server; zero fields mean the defaults. Control nodes are
	// always exempt (their leader loops must never be refused).
	APILimits api.Limits
	// ClusterNetwork is the pod network a new cluster is created with
	// (ctl init --cluster-cidr, --node-cidr-mask-size); zero fields take
	// clusternet.Default's. It is stored once, when the cluster is made.
	ClusterNetwork clusternet.Config
	// Worker, when set, runs on a worker once its Node is registered, in
	// the same process and until the node stops (ctl join runs the agent
	// here). Nil: the worker only holds its certificate.
	Worker WorkerFunc

	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Gatherer is what the metrics ports serve: the Registerer's registry
	// (a new one with Go runtime and process metrics when both are nil).
	Gatherer prometheus.Gatherer
	// MetricsPort is the node's metrics port (mutual TLS; 0: best effort
	// at DefaultMetricsPort on a control node, DefaultWorkerMetricsPort on
	// a worker; -1: none). MetricsAddr, when set,
	// serves the same metrics as plain HTTP at an address the operator
	// chose, on control nodes and workers.
	MetricsPort int
	MetricsAddr string
}

// DefaultConfig returns defaults; DataDir must be set.
func DefaultConfig() Config {
	return Config{
		BindAddress:          "0.0.0.0",
		APIPort:              DefaultAPIPort,
		RaftPort:             DefaultRaftPort,
		AgentPort:            DefaultAgentPort,
		Out:                  io.Discard,
		NodeCertLifetime:     pki.DefaultNodeCertLifetime,
		UserCertLifetime:     pki.DefaultUserCertLifetime,
		Renew:                pki.DefaultRenewerConfig(),
		RegistrationInterval: 10 * time.Second,
		CAPollInterval:       10 * time.Minute,
		AuditMaxBytes:        100 << 20,
		Logger:               slog.Default(),
	}
}

func (c *Config) fill() error {
	def := DefaultConfig()
	if c.DataDir == "" {
		return fmt.Errorf("--data-dir is required")
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Logger == nil {
		c.Logger = def.Logger
	}
	if c.NodeCertLifetime <= 0 {
		c.NodeCertLifetime = def.NodeCertLifetime
	}
	if c.UserCertLifetime <= 0 {
		c.UserCertLifetime = def.UserCertLifetime
	}
	if c.RegistrationInterval <= 0 {
		c.RegistrationInterval = def.RegistrationInterval
	}
	if c.CAPollInterval <= 0 {
		c.CAPollInterval = def.CAPollInterval
	}
	if c.AuditMaxBytes <= 0 {
		c.AuditMaxBytes = def.AuditMaxBytes
	}
	if m := c.ServiceAccountMinTokenLifetime; m != 0 && (m < rbac.MinTokenLifetimeFloor || m > rbac.DefaultTokenLifetime) {
		return fmt.Errorf("node config: ServiceAccountMinTokenLifetime %s: must be between %s and %s", m, rbac.MinTokenLifetimeFloor, rbac.DefaultTokenLifetime)
	}
	c.fillMetrics()
	if c.Renew.Renew != nil {
		return fmt.Errorf("node config: Renew.Renew is set by the node, leave it nil")
	}
	return nil
}

// newState fills defaults for a node being created.
func (c *Config) newState(role Role, createdBy string) (State, error) {
	def := DefaultConfig()
	name := c.Name
	if name == "" {
		h, err := os.Hostname()
		if err != nil {
			return State{}, fmt.Errorf("node name: no --name and no host name: %w", err)
		}
		name = strings.ToLower(h)
	}
	var err error
	if role == RoleControl {
		_, err = pki.ControlIdentity(name)
	} else {
		_, err = pki.NodeIdentity(name)
	}
	if err != nil {
		return State{}, fmt.Errorf("--name: %w", err)
	}
	adv := c.Advertise
	if adv == "" {
		if adv, err = defaultAdvertise(); err != nil {
			return State{}, err
		}
	}
	if strings.Contains(adv, ":") && net.ParseIP(adv) == nil {
		return State{}, fmt.Errorf("--advertise %q: give a host or IP address without a port (ports are --api-port and --raft-port)", adv)
	}
	s := State{Role: role, Name: name, Advertise: adv, BindAddress: c.BindAddress, CreatedBy: createdBy, CreatedAt: time.Now().UTC()}
	if s.BindAddress == "" {
		s.BindAddress = def.BindAddress
	}
	if role == RoleControl {
		s.APIPort, s.RaftPort = orDefault(c.APIPort, def.APIPort), orDefault(c.RaftPort, def.RaftPort)
		if err := checkPort("--api-port", s.APIPort); err != nil {
			return State{}, err
		}
		if err := checkPort("--raft-port", s.RaftPort); err != nil {
			return State{}, err
		}
		if s.APIPort == s.RaftPort {
			return State{}, fmt.Errorf("--api-port and --raft-port are both %d: they must differ", s.APIPort)
		}
	}
	return s, nil
}

// checkResume refuses flags that contradict the node being resumed.
func (c *Config) checkResume(s State) error {
	mismatch := func(flag string, given, have any) error {
		return fmt.Errorf("%s %v does not match this data dir's node (%v in %s); a node keeps its name and addresses — drop the flag or use another --data-dir",
			flag, given, have, StateFile)
	}
	switch {
	case c.Name != "" && c.Name != s.Name:
		return mismatch("--name", c.Name, s.Name)
	case c.Advertise != "" && c.Advertise != s.Advertise:
		return mismatch("--advertise", c.Advertise, s.Advertise)
	case s.Role == RoleControl && c.APIPort != 0 && c.APIPort != s.APIPort:
		return mismatch("--api-port", c.APIPort, s.APIPort)
	case s.Role == RoleControl && c.RaftPort != 0 && c.RaftPort != s.RaftPort:
		return mismatch("--raft-port", c.RaftPort, s.RaftPort)
	}
	return nil
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func checkPort(flag string, p int) error {
	if p < 1 || p > 65535 {
		return fmt.Errorf("%s %d: must be 1-65535", flag, p)
	}
	return nil
}

// defaultAdvertise is the first non-loopback unicast address of the host.
func defaultAdvertise() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", fmt.Errorf("--advertise not given and the host's addresses are unreadable: %w", err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.IsGlobalUnicast() && ipn.IP.To4() != nil {
			return ipn.IP.String(), nil
		}
	}
	return "", fmt.Errorf("--advertise not given and the host has no non-loopback IPv4 address: pass --advertise")
}

// run adapts a context-bound loop to an error channel.
func goRun(ctx context.Context, errs chan<- error, name string, f func(context.Context) error) {
	go func() {
		if err := f(ctx); err != nil && ctx.Err() == nil {
			errs <- fmt.Errorf("%s: %w", name, err)
			return
		}
		errs <- nil
	}()
}
