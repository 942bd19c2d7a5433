package netproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Backend names for Config.Backend.
const (
	BackendAuto     = "auto"
	BackendIPVS     = "ipvs"
	BackendNFTables = "nftables"
)

// Config configures a Proxy. Start from DefaultConfig.
type Config struct {
	// NetNSPath is the network namespace to program (e.g. /proc/<pid>/ns/net
	// or /run/netns/<name>); empty means the caller's.
	NetNSPath string
	// Backend is "auto" (IPVS if the kernel really has it, else nftables),
	// "ipvs" or "nftables".
	Backend string
	// ClusterCIDR is the pod network. ClusterIP traffic from outside it is
	// masqueraded so replies return through this node; zero value: only
	// hairpin, node-originated and NodePort traffic is masqueraded.
	ClusterCIDR netip.Prefix
	// MasqueradeMark is the packet mark bit meaning "SNAT this in postrouting".
	MasqueradeMark uint32
	// NFTTable is the nftables table the proxy owns (both backends use one).
	NFTTable string
	// ResyncPeriod: how often Run re-reads the kernel and repairs drift.
	ResyncPeriod time.Duration
	// MinSyncInterval: changes arriving closer than this are applied together.
	MinSyncInterval time.Duration
	IPVS            IPVSConfig
	Logger          *slog.Logger
	// Registerer receives the metrics; nil: not registered.
	Registerer prometheus.Registerer
}

// IPVSConfig holds what only the IPVS backend uses.
type IPVSConfig struct {
	// Interface is the dummy interface that holds the ClusterIPs so the
	// kernel accepts packets for them locally, where IPVS sees them.
	Interface string
	Scheduler string
	// TCPTimeout is the idle timeout of established TCP connections in
	// IPVS' own table. The kernel default of 900 s silently breaks idle
	// long-lived connections (moby#31208); it must exceed the usual 7200 s
	// keepalive time so a keepalive probe refreshes the entry.
	TCPTimeout    time.Duration
	TCPFinTimeout time.Duration
	UDPTimeout    time.Duration
	// TerminationGrace: a removed endpoint stays with weight 0 (no new
	// connections) until its active connections end or this passes.
	TerminationGrace time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Backend:         BackendAuto,
		MasqueradeMark:  0x4000,
		NFTTable:        "skiff-proxy",
		ResyncPeriod:    time.Minute,
		MinSyncInterval: 50 * time.Millisecond,
		IPVS: IPVSConfig{
			Interface:        "skiff-ipvs0",
			Scheduler:        "rr",
			TCPTimeout:       7260 * time.Second,
			TCPFinTimeout:    120 * time.Second,
			UDPTimeout:       300 * time.Second,
			TerminationGrace: 60 * time.Second,
		},
	}
}

// ErrNoIPVS means the IPVS backend was asked for but the kernel has no ip_vs.
var ErrNoIPVS = errors.New("kernel has no IPVS")

// backend is what both data paths implement.
type backend interface {
	name() string
	// sync makes the kernel match want. full: re-read the kernel first
	// instead of trusting what the last sync left.
	// changed names the service port IDs that differ from the previous
	// call (nil: unknown, compare everything).
	sync(ctx context.Context, want desiredState, changed map[string]bool, full bool) (syncResult, error)
	cleanup() error
	close() error
}

type syncResult struct {
	Rules      int // kernel objects owned (rules/elements, or services/destinations)
	Changed    int // objects changed by this sync
	Recomputed int // service ports recomputed and compared
}

// Proxy keeps the node's Service data path in line with the Services and
// Endpoints it is given. Methods are safe for concurrent use.
type Proxy struct {
	cfg     Config
	log     *slog.Logger
	ns      netns.NsHandle
	backend backend
	metrics *metrics

	mu        sync.Mutex
	services  map[ServiceKey]Service
	endpoints map[ServiceKey]Endpoints
	changed   chan struct{}
	// desired is kept between syncs; dirty Services are rebuilt in it.
	desired  desiredState
	idsByKey map[ServiceKey][]string
	dirty    map[ServiceKey]bool
	// readyEndpoints sums len(Ready) over desired.
	readyEndpoints int

	syncMu sync.Mutex // one sync at a time
	last   SyncStats
}

// SyncStats describes the last successful sync.
type SyncStats struct {
	Full     bool
	Duration time.Duration
	Rules    int // kernel objects owned
	Changed  int // kernel objects added, changed or removed
	// Recomputed counts the service ports whose kernel state was computed
	// and compared: all of them in a full sync, only the changed ones in
	// an incremental one.
	Recomputed int
}

// New opens the namespace, chooses the backend (logging which and why) and
// returns a Proxy that has not touched the kernel yet: call Sync or Run.
func New(cfg Config) (*Proxy, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NFTTable == "" || cfg.MasqueradeMark == 0 || cfg.IPVS.Interface == "" {
		return nil, fmt.Errorf("%w: config: NFTTable, MasqueradeMark and IPVS.Interface are required (start from DefaultConfig)", ErrInvalid)
	}
	ns, err := openNetNS(cfg.NetNSPath)
	if err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger.With("component", "netproxy"), ns: ns,
		services: map[ServiceKey]Service{}, endpoints: map[ServiceKey]Endpoints{}, changed: make(chan struct{}, 1),
		dirty: map[ServiceKey]bool{}}
	if err := p.chooseBackend(); err != nil {
		ns.Close()
		return nil, err
	}
	p.metrics = newMetrics(cfg.Registerer, p.backend.name())
	return p, nil
}

// BackendName says which backend programs the kernel.
func (p *Proxy) BackendName() string { return p.backend.name() }

// SetService adds or replaces a Service.
func (p *Proxy) SetService(s Service) error {
	if err := s.Validate(); err != nil {
		return err
	}
	p.mu.Lock()
	p.services[s.ServiceKey] = s
	p.dirty[s.ServiceKey] = true
	p.mu.Unlock()
	p.notify()
	return nil
}

// DeleteService removes a Service; its kernel state goes at the next sync.
func (p *Proxy) DeleteService(k ServiceKey) {
	p.mu.Lock()
	delete(p.services, k)
	p.dirty[k] = true
	p.mu.Unlock()
	p.notify()
}

// SetEndpoints adds or replaces the Endpoints of a Service.
func (p *Proxy) SetEndpoints(e Endpoints) error {
	if err := e.Validate(); err != nil {
		return err
	}
	p.mu.Lock()
	p.endpoints[e.ServiceKey] = e
	p.dirty[e.ServiceKey] = true
	p.mu.Unlock()
	p.notify()
	return nil
}

// DeleteEndpoints removes the Endpoints of a Service.
func (p *Proxy) DeleteEndpoints(k ServiceKey) {
	p.mu.Lock()
	delete(p.endpoints, k)
	p.dirty[k] = true
	p.mu.Unlock()
	p.notify()
}

func (p *Proxy) notify() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// Sync applies the difference between the Services/Endpoints and what the
// last sync left in the kernel.
func (p *Proxy) Sync(ctx context.Context) error { return p.sync(ctx, false) }

// FullSync re-reads the kernel state and repairs any difference.
func (p *Proxy) FullSync(ctx context.Context) error { return p.sync(ctx, true) }

func (p *Proxy) sync(ctx context.Context, full bool) error {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	start := time.Now()
	p.mu.Lock()
	want, changed := p.updateDesired(full)
	ready, ports := p.readyEndpoints, len(want)
	p.mu.Unlock()
	res, err := p.backend.sync(ctx, want, changed, full)
	p.metrics.observe(full, time.Since(start), res, ready, ports, err)
	if err != nil {
		return fmt.Errorf("%s sync: %w", p.backend.name(), err)
	}
	p.last = SyncStats{Full: full, Duration: time.Since(start), Rules: res.Rules, Changed: res.Changed, Recomputed: res.Recomputed}
	p.log.Debug("synced", "backend", p.backend.name(), "full", full, "changed", res.Changed, "took", time.Since(start))
	return nil
}

// updateDesired rebuilds the desired state of the Services changed since
// the last sync (all of them when full) and names the changed IDs (nil:
// all). Callers hold p.mu.
func (p *Proxy) updateDesired(full bool) (desiredState, map[string]bool) {
	if full || p.desired == nil {
		p.desired = buildDesired(p.services, p.endpoints)
		p.idsByKey = map[ServiceKey][]string{}
		p.readyEndpoints = 0
		for id, sp := range p.desired {
			p.idsByKey[sp.Service] = append(p.idsByKey[sp.Service], id)
			p.readyEndpoints += len(sp.Ready)
		}
		clear(p.dirty)
		return p.desired, nil
	}
	changed := map[string]bool{}
	for key := range p.dirty {
		for _, id := range p.idsByKey[key] {
			changed[id] = true
			if sp := p.desired[id]; sp != nil {
				p.readyEndpoints -= len(sp.Ready)
			}
			delete(p.desired, id)
		}
		delete(p.idsByKey, key)
		svc, ok := p.services[key]
		if !ok {
			continue
		}
		for id, sp := range buildDesired(map[ServiceKey]Service{key: svc}, map[ServiceKey]Endpoints{key: p.endpoints[key]}) {
			p.desired[id] = sp
			p.idsByKey[key] = append(p.idsByKey[key], id)
			p.readyEndpoints += len(sp.Ready)
			changed[id] = true
		}
	}
	clear(p.dirty)
	return p.desired, changed
}

// LastSync describes the last successful sync.
func (p *Proxy) LastSync() SyncStats {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	return p.last
}

// Run syncs fully at once and every ResyncPeriod, and incrementally after
// changes, until ctx ends. Failed syncs are logged, counted and retried.
func (p *Proxy) Run(ctx context.Context) error {
	resync := time.NewTicker(p.cfg.ResyncPeriod)
	defer resync.Stop()
	// drain ticks reap IPVS destinations whose connections have ended
	drain := time.NewTicker(time.Second)
	defer drain.Stop()
	backoff := time.Second
	full, due := true, true
	var retry <-chan time.Time
	for {
		if due {
			if err := p.sync(ctx, full); err != nil {
				p.log.Error("sync failed; retrying", "err", err, "in", backoff)
				retry = time.After(backoff)
				backoff = min(2*backoff, 30*time.Second)
				full = true
			} else {
				backoff, full, retry = time.Second, false, nil
			}
		}
		due = false
		select {
		case <-ctx.Done():
			return nil
		case <-resync.C:
			full, due = true, true
		case <-retry:
			due = true
		case <-drain.C:
			if d, ok := p.backend.(interface{ draining() bool }); ok && d.draining() {
				due = true
			}
		case <-p.changed:
			// let a burst of changes (one Endpoints per Service) coalesce
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(p.cfg.MinSyncInterval):
			}
			due = true
		}
	}
}

// Close releases the namespace and netlink handles; kernel state stays so
// that traffic keeps flowing across a restart.
func (p *Proxy) Close() error {
	err := p.backend.close()
	p.ns.Close()
	return err
}

// Cleanup removes all kernel state this proxy's backend owns.
func (p *Proxy) Cleanup() error { return p.backend.cleanup() }

// bigSocketBuffers lets one netlink batch carry thousands of messages and
// their acks (root may exceed net.core.{r,w}mem_max with the FORCE options).
func bigSocketBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		serr = errors.Join(
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 16<<20),
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20))
	})
	if err != nil {
		return err
	}
	if serr != nil {
		// unprivileged: fall back to the capped sizes
		_ = c.SetWriteBuffer(4 << 20)
		_ = c.SetReadBuffer(4 << 20)
	}
	return nil
}

// Services returns a copy of the Services the proxy was given.
func (p *Proxy) Services() []Service {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Service, 0, len(p.services))
	for _, s := range p.services {
		out = append(out, s)
	}
	return out
}

// AllEndpoints returns a copy of the Endpoints the proxy was given.
func (p *Proxy) AllEndpoints() []Endpoints {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Endpoints, 0, len(p.endpoints))
	for _, e := range p.endpoints {
		out = append(out, e)
	}
	return out
}
