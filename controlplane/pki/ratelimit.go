package pki

import (
	"errors"
	"math"
	"net"
	"net/netip"
	"sync"
	"time"
)

// ErrTooManyFailures means a remote address failed to join too often
// lately; its joins are refused without looking at the token until its
// budget refills.
var ErrTooManyFailures = errors.New("too many failed joins from this address")

// FailureLimitConfig is the budget of failed joins per remote address: a
// token bucket of Burst failures refilled at one per Refill. Attempts are
// free while the bucket holds at least one; each failure takes one.
type FailureLimitConfig struct {
	Burst  int
	Refill time.Duration
	// MaxAddresses bounds the memory: beyond it, addresses not yet tracked
	// share one extra bucket (so many addresses together are still
	// slowed), until tracked ones refill and are forgotten.
	MaxAddresses int
}

// DefaultFailureLimitConfig: 10 failures at once, then one every 6 s
// (10 a minute) per address; at most 4,096 addresses tracked.
func DefaultFailureLimitConfig() FailureLimitConfig {
	return FailureLimitConfig{Burst: 10, Refill: 6 * time.Second, MaxAddresses: 4096}
}

// failureLimiter counts failed joins per remote address (IPv4 address, or
// IPv6 /64: one machine usually holds a whole /64).
type failureLimiter struct {
	cfg FailureLimitConfig
	now func() time.Time

	mu      sync.Mutex
	buckets map[netip.Prefix]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// overflow is the shared key of addresses beyond MaxAddresses.
var overflow = netip.Prefix{}

func newFailureLimiter(cfg FailureLimitConfig, now func() time.Time) *failureLimiter {
	def := DefaultFailureLimitConfig()
	if cfg.Burst <= 0 {
		cfg.Burst = def.Burst
	}
	if cfg.Refill <= 0 {
		cfg.Refill = def.Refill
	}
	if cfg.MaxAddresses <= 0 {
		cfg.MaxAddresses = def.MaxAddresses
	}
	if now == nil {
		now = time.Now
	}
	return &failureLimiter{cfg: cfg, now: now, buckets: map[netip.Prefix]*bucket{}}
}

// limitKey is the bucket key of a remote address ("host:port" or host).
func limitKey(remote string) netip.Prefix {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return overflow // not an IP (a unix socket in tests): share one bucket
	}
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// refill brings b up to date; the caller holds mu.
func (l *failureLimiter) refill(b *bucket, now time.Time) {
	if elapsed := now.Sub(b.at); elapsed > 0 {
		b.tokens = math.Min(float64(l.cfg.Burst), b.tokens+float64(elapsed)/float64(l.cfg.Refill))
		b.at = now
	}
}

// wait returns how long remote must wait before its next attempt is
// looked at; zero means now.
func (l *failureLimiter) wait(remote string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[limitKey(remote)]
	if !ok {
		if b, ok = l.buckets[overflow]; !ok || len(l.buckets) < l.cfg.MaxAddresses {
			return 0
		}
	}
	now := l.now()
	l.refill(b, now)
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) * float64(l.cfg.Refill))
}

// fail takes one from remote's budget.
func (l *failureLimiter) fail(remote string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	key := limitKey(remote)
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.cfg.MaxAddresses {
			l.dropFull(now)
		}
		if len(l.buckets) >= l.cfg.MaxAddresses {
			key = overflow
		}
		if b, ok = l.buckets[key]; !ok {
			b = &bucket{tokens: float64(l.cfg.Burst), at: now}
			l.buckets[key] = b
		}
	}
	l.refill(b, now)
	b.tokens = math.Max(0, b.tokens-1)
}

// dropFull forgets addresses whose budget has refilled: they are the same
// as never seen. The caller holds mu.
func (l *failureLimiter) dropFull(now time.Time) {
	for k, b := range l.buckets {
		if l.refill(b, now); b.tokens >= float64(l.cfg.Burst) {
			delete(l.buckets, k)
		}
	}
}

// tracked is how many buckets exist (tests).
func (l *failureLimiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
