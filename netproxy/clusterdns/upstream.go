package clusterdns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// ErrNoUpstream: the node has no resolver to send a name outside the
// cluster to.
var ErrNoUpstream = errors.New("no upstream resolver")

// Cache bounds (CoreDNS' cache plugin keeps 3600 s / 1800 s at most; a
// node cache follows changes upstream sooner).
const (
	maxPositiveTTL = 300 * time.Second
	maxNegativeTTL = 30 * time.Second
	// defaultNegativeTTL applies when a negative answer has no SOA.
	defaultNegativeTTL = 5 * time.Second
	maxCacheEntries    = 10000
	// failureTTL: a name no upstream answered fails at once for this long
	// (RFC 2308 §7), so a client's retries do not each wait out the
	// timeouts again.
	failureTTL = 2 * time.Second
)

// Upstream forwards questions to the node's resolvers and caches the
// answers, negative ones too. Safe for concurrent use.
type Upstream struct {
	servers []string // host:port
	timeout time.Duration
	udp     *dns.Client
	tcp     *dns.Client
	now     func() time.Time

	mu    sync.Mutex
	cache map[cacheKey]cached
}

type cacheKey struct {
	name   string
	qtype  uint16
	qclass uint16
}

type cached struct {
	msg     *dns.Msg // nil: a failure (err)
	err     error
	stored  time.Time
	expires time.Time
}

// NewUpstream forwards to servers (host:port); none means every question
// fails at once (SERVFAIL). timeout bounds each attempt.
func NewUpstream(servers []string, timeout time.Duration) *Upstream {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	return &Upstream{servers: servers, timeout: timeout, now: time.Now,
		udp: &dns.Client{Net: "udp", Timeout: timeout}, tcp: &dns.Client{Net: "tcp", Timeout: timeout},
		cache: map[cacheKey]cached{}}
}

// ReadResolvConf lists the nameservers of a resolv.conf as host:port.
// A file without nameservers gives none (not an error): such a node
// answers only cluster names.
func ReadResolvConf(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("upstream resolvers: %w", err)
	}
	defer f.Close()
	cc, err := dns.ClientConfigFromReader(f)
	if err != nil {
		return nil, fmt.Errorf("upstream resolvers: %s: %w", path, err)
	}
	out := make([]string, 0, len(cc.Servers))
	for _, s := range cc.Servers {
		out = append(out, net.JoinHostPort(s, cc.Port))
	}
	return out, nil
}

// Servers lists the upstream resolvers.
func (u *Upstream) Servers() []string { return u.servers }

// Resolve answers q: from the cache while the answer lives (TTLs counted
// down), else from the first upstream that answers. The reply's rcode is
// the upstream's; an error means no upstream answered.
func (u *Upstream) Resolve(ctx context.Context, q dns.Question) (*dns.Msg, error) {
	k := cacheKey{name: q.Name, qtype: q.Qtype, qclass: q.Qclass}
	now := u.now()
	u.mu.Lock()
	c, ok := u.cache[k]
	if ok && now.After(c.expires) {
		delete(u.cache, k)
		ok = false
	}
	u.mu.Unlock()
	if ok {
		if c.msg == nil {
			return nil, c.err
		}
		return aged(c.msg, uint32(now.Sub(c.stored)/time.Second)), nil
	}
	if len(u.servers) == 0 {
		return nil, ErrNoUpstream
	}
	req := new(dns.Msg)
	req.SetQuestion(q.Name, q.Qtype)
	req.Question[0].Qclass = q.Qclass
	req.RecursionDesired = true
	req.SetEdns0(dns.DefaultMsgSize, false)
	var errs []error
	for _, s := range u.servers {
		r, _, err := u.udp.ExchangeContext(ctx, req, s)
		if err == nil && r.Truncated {
			r, _, err = u.tcp.ExchangeContext(ctx, req, s)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s, err))
			continue
		}
		if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
			errs = append(errs, fmt.Errorf("%s: %s", s, dns.RcodeToString[r.Rcode]))
			continue
		}
		u.store(k, r, now)
		return r, nil
	}
	err := fmt.Errorf("upstream %s: %w", q.Name, errors.Join(errs...))
	if ctx.Err() == nil {
		u.put(k, cached{err: err, stored: now, expires: now.Add(failureTTL)}, now)
	}
	return nil, err
}

// store keeps r for its lifetime: the smallest TTL of its answers, or
// for a negative answer the SOA's minimum (RFC 2308), both capped.
func (u *Upstream) store(k cacheKey, r *dns.Msg, now time.Time) {
	ttl := cacheTTL(r)
	if ttl <= 0 {
		return
	}
	r = r.Copy()
	r.Extra = stripOPT(r.Extra)
	u.put(k, cached{msg: r, stored: now, expires: now.Add(ttl)}, now)
}

func (u *Upstream) put(k cacheKey, c cached, now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.cache) >= maxCacheEntries {
		// Drop expired entries, then any (map order) until there is room.
		for ck, c := range u.cache {
			if now.After(c.expires) || len(u.cache) >= maxCacheEntries {
				delete(u.cache, ck)
			}
		}
	}
	u.cache[k] = c
}

func cacheTTL(r *dns.Msg) time.Duration {
	if r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
		min := maxPositiveTTL
		for _, rr := range r.Answer {
			if t := time.Duration(rr.Header().Ttl) * time.Second; t < min {
				min = t
			}
		}
		return min
	}
	ttl := defaultNegativeTTL
	for _, rr := range r.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			ttl = time.Duration(min(soa.Minttl, soa.Hdr.Ttl)) * time.Second
		}
	}
	return min(ttl, maxNegativeTTL)
}

func stripOPT(rrs []dns.RR) []dns.RR {
	out := rrs[:0]
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			out = append(out, rr)
		}
	}
	return out
}

// aged is a copy of m with every TTL lowered by age seconds.
func aged(m *dns.Msg, age uint32) *dns.Msg {
	out := &dns.Msg{MsgHdr: m.MsgHdr}
	out.Rcode = m.Rcode
	sec := func(in []dns.RR) []dns.RR {
		if len(in) == 0 {
			return nil
		}
		rs := make([]dns.RR, len(in))
		for i, rr := range in {
			c := dns.Copy(rr)
			if h := c.Header(); h.Ttl > age {
				h.Ttl -= age
			} else {
				h.Ttl = 0
			}
			rs[i] = c
		}
		return rs
	}
	out.Answer, out.Ns, out.Extra = sec(m.Answer), sec(m.Ns), sec(m.Extra)
	return out
}
