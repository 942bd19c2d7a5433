package clusterdns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/skiffhq/skiff/proto/client"
)

// Config configures a Server. Start from DefaultConfig.
type Config struct {
	// NetNSPath is the network namespace the server answers in (the
	// Service proxy's); empty means the caller's.
	NetNSPath string
	// Interface is the dummy interface that holds the cluster DNS address.
	Interface string
	// Port is the DNS port (53).
	Port int
	// ResolvConf is the node's resolv.conf: its nameservers are the
	// upstreams of names outside the cluster.
	ResolvConf string
	// UpstreamTimeout bounds each upstream attempt.
	UpstreamTimeout time.Duration
	// PodRanges are the pod addresses that may query (the cluster range);
	// the node's own addresses always may, everyone else is REFUSED.
	PodRanges []netip.Prefix
	Logger    *slog.Logger
}

// DefaultConfig: port 53 on skiff-dns0, upstreams from /etc/resolv.conf.
func DefaultConfig() Config {
	return Config{Interface: "skiff-dns0", Port: 53, ResolvConf: "/etc/resolv.conf", UpstreamTimeout: 2 * time.Second}
}

// Server is one node's cluster DNS server.
type Server struct {
	local localAddrs
	cfg   Config
	log   *slog.Logger
	zone  *Zone
	feed  *feed
	up    *Upstream
}

// New reads the node's upstreams and returns a server fed from c; Run
// starts it.
func New(c *client.Client, cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Interface == "" || cfg.Port <= 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("clusterdns: config: Interface and a Port in 1-65535 are required (start from DefaultConfig)")
	}
	var servers []string
	if cfg.ResolvConf != "" {
		s, err := ReadResolvConf(cfg.ResolvConf)
		if err != nil {
			return nil, err
		}
		servers = s
	}
	zone := NewZone("")
	return &Server{cfg: cfg, log: cfg.Logger.With("component", "clusterdns"), zone: zone,
		feed: newFeed(c, zone), up: NewUpstream(servers, cfg.UpstreamTimeout)}, nil
}

// Settings waits until the caches have synced and returns the cluster's
// DNS settings; ok is false when the cluster has no kube-dns Service with
// an address (pods then get the node's resolv.conf, as kubelet does
// without a cluster DNS).
func (s *Server) Settings(ctx context.Context) (Settings, bool, error) {
	for {
		st, synced, ch := s.feed.current()
		if synced {
			return st, st.Nameserver.IsValid(), nil
		}
		select {
		case <-ctx.Done():
			return Settings{}, false, fmt.Errorf("cluster DNS settings: %w", ctx.Err())
		case <-ch:
		}
	}
}

// Run feeds the zone and, once the kube-dns Service has an address,
// answers at it (UDP and TCP) until ctx ends. A changed address moves the
// listeners.
func (s *Server) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.feed.run(ctx, func() {}) })
	g.Go(func() error { return s.serve(ctx) })
	return g.Wait()
}

func (s *Server) serve(ctx context.Context) error {
	h := &Handler{Zone: s.zone, Upstream: s.up, Log: s.log, Allow: s.allowed}
	retry := time.Second
	for {
		st, _, ch := s.feed.current()
		if !st.Nameserver.IsValid() {
			select {
			case <-ctx.Done():
				return nil
			case <-ch:
				continue
			}
		}
		addr := st.Nameserver
		stop, err := s.listen(addr, h)
		if err != nil {
			// The Service path goes on without DNS; try again later.
			s.log.Error("cluster DNS cannot answer; retrying", "address", addr, "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(retry):
			}
			retry = min(retry*2, 30*time.Second)
			continue
		}
		retry = time.Second
		s.log.Info("cluster DNS answering", "address", addr, "domain", st.Domain, "upstreams", s.up.Servers())
		for moved := false; !moved; {
			select {
			case <-ctx.Done():
				stop()
				return nil
			case <-ch:
				var cur Settings
				cur, _, ch = s.feed.current()
				// A deleted kube-dns (the control plane puts it back)
				// leaves the last address answering.
				moved = cur.Nameserver.IsValid() && cur.Nameserver != addr
			}
		}
		stop()
	}
}

// listen holds addr on the dummy interface and serves h there over UDP
// and TCP; stop closes both.
func (s *Server) listen(addr netip.Addr, h dns.Handler) (stop func(), err error) {
	var pc net.PacketConn
	var ln net.Listener
	hostport := net.JoinHostPort(addr.String(), strconv.Itoa(s.cfg.Port))
	err = inNetNS(s.cfg.NetNSPath, func() error {
		if err := holdAddress(s.cfg.Interface, addr); err != nil {
			return err
		}
		var err error
		if pc, err = net.ListenPacket("udp", hostport); err != nil {
			return fmt.Errorf("clusterdns: %w", err)
		}
		if ln, err = net.Listen("tcp", hostport); err != nil {
			pc.Close()
			return fmt.Errorf("clusterdns: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h}
	done := make(chan struct{}, 2)
	for _, srv := range []*dns.Server{udp, tcp} {
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				s.log.Warn("dns listener stopped", "address", hostport, "err", err)
			}
			done <- struct{}{}
		}()
	}
	return func() {
		udp.Shutdown()
		tcp.Shutdown()
		<-done
		<-done
	}, nil
}

// holdAddress puts addr/32 on a dummy interface named name (made if
// missing), so the kernel delivers packets for it locally.
func holdAddress(name string, addr netip.Addr) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return fmt.Errorf("clusterdns: interface %s: %w", name, err)
		}
		err := netlink.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}})
		if errors.Is(err, unix.EOPNOTSUPP) {
			// A kernel without the dummy driver: loopback holds the
			// address just as well (the kernel delivers packets for any
			// local address, whichever interface they arrive on).
			name = "lo"
		} else if err != nil {
			return fmt.Errorf("clusterdns: add interface %s: %w", name, err)
		}
		if link, err = netlink.LinkByName(name); err != nil {
			return fmt.Errorf("clusterdns: interface %s: %w", name, err)
		}
	}
	ipn := &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(addr.BitLen(), addr.BitLen())}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: ipn}); err != nil {
		return fmt.Errorf("clusterdns: address %s on %s: %w", addr, name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("clusterdns: interface %s up: %w", name, err)
	}
	return nil
}

// inNetNS runs f on a thread inside the namespace at path ("" runs it
// here). Sockets made there stay in that namespace.
func inNetNS(path string, f func() error) error {
	if path == "" {
		return f()
	}
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("clusterdns: netns %s: %w", path, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked: it may be left in target, and a
		// locked thread ends with its goroutine.
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("clusterdns: enter netns %s: %w", path, err)
			return
		}
		err = f()
		if rerr := netns.Set(orig); rerr == nil && err == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// allowed: a pod (PodRanges) or the node itself (one of its addresses).
// Without PodRanges (a node that does not know the cluster range) every
// client that routes to the address may query.
func (s *Server) allowed(a netip.Addr) bool {
	if len(s.cfg.PodRanges) == 0 {
		return true
	}
	for _, p := range s.cfg.PodRanges {
		if p.Contains(a) {
			return true
		}
	}
	return a.IsLoopback() || s.local.has(a, s.cfg.NetNSPath)
}

// localAddrs caches the addresses of the node's network namespace,
// re-read on a miss at most once a second.
type localAddrs struct {
	mu   sync.Mutex
	set  map[netip.Addr]bool
	read time.Time
}

func (l *localAddrs) has(a netip.Addr, nsPath string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.set[a] || time.Since(l.read) < time.Second {
		return l.set[a]
	}
	l.read = time.Now()
	set := map[netip.Addr]bool{}
	err := inNetNS(nsPath, func() error {
		addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
		for _, ad := range addrs {
			if ip, ok := netip.AddrFromSlice(ad.IP); ok {
				set[ip.Unmap()] = true
			}
		}
		return err
	})
	if err == nil {
		l.set = set
	}
	return l.set[a]
}
