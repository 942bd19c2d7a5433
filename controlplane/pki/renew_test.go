package pki

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/testutil"
)

type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
	waits   []time.Duration
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waits = append(c.waits, d)
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

func (c *fakeClock) waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

func (c *fakeClock) waitLog() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

func issueTLS(t *testing.T, ca *CA, id Identity, life time.Duration) tls.Certificate {
	t.Helper()
	kp, _, err := ca.Issue(IssueOptions{Identity: id, Lifetime: life, Server: true, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := kp.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRenewAtTwoThirds(t *testing.T) {
	ca := newTestCA(t)
	clock := &fakeClock{now: time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)}
	ca.SetClock(clock.Now)
	id, _ := NodeIdentity("w1")
	c := issueTLS(t, ca, id, 3*time.Hour-clockSkew) // NotBefore..NotAfter is exactly 3h
	if got, want := RenewAt(c.Leaf, 2.0/3.0), clock.now.Add(-clockSkew+2*time.Hour); !got.Equal(want) {
		t.Fatalf("RenewAt %s, want %s", got, want)
	}
}

func TestRenewerRenewsWhenDue(t *testing.T) {
	ca := newTestCA(t)
	clock := &fakeClock{now: time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)}
	ca.SetClock(clock.Now)
	id, _ := NodeIdentity("w1")
	first := issueTLS(t, ca, id, 3*time.Hour-clockSkew)
	var mu sync.Mutex
	calls := 0
	cfg := DefaultRenewerConfig()
	cfg.Initial, cfg.Clock = first, clock
	cfg.Renew = func(context.Context) (tls.Certificate, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		return issueTLS(t, ca, id, 3*time.Hour-clockSkew), nil
	}
	cfg.OnError = func(err error) { t.Errorf("unexpected renewal error: %v", err) }
	r, err := NewRenewer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	testutil.WaitFor(t, 5*time.Second, "renewer waiting", func() bool { return clock.waiting() == 1 })
	// Due 2h after NotBefore = 1h55m from now.
	if w := clock.waitLog()[0]; w != 2*time.Hour-clockSkew {
		t.Fatalf("first wait %s", w)
	}
	clock.Advance(time.Hour)
	got, _ := r.GetCertificate(nil)
	if got.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) != 0 {
		t.Fatal("renewed too early")
	}
	clock.Advance(time.Hour)
	testutil.WaitFor(t, 5*time.Second, "certificate swapped", func() bool {
		c, _ := r.GetClientCertificate(nil)
		return c.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) != 0
	})
	testutil.WaitFor(t, 5*time.Second, "next renewal scheduled", func() bool { return clock.waiting() == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Fatalf("%d renew calls, want 1", calls)
	}
}

func TestRenewerReportsErrorsAndBacksOff(t *testing.T) {
	ca := newTestCA(t)
	clock := &fakeClock{now: time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)}
	ca.SetClock(clock.Now)
	id, _ := NodeIdentity("w1")
	other, _ := NodeIdentity("w2")
	first := issueTLS(t, ca, id, time.Hour)
	var mu sync.Mutex
	var errs []error
	attempt := 0
	unreachable := errors.New("control plane unreachable")
	cfg := DefaultRenewerConfig()
	cfg.Initial, cfg.Clock, cfg.MinBackoff, cfg.MaxBackoff = first, clock, time.Second, 4*time.Second
	cfg.Renew = func(context.Context) (tls.Certificate, error) {
		mu.Lock()
		attempt++
		n := attempt
		mu.Unlock()
		switch n {
		case 1, 2, 3:
			return tls.Certificate{}, unreachable
		case 4:
			return issueTLS(t, ca, other, time.Hour), nil // wrong identity: refused
		}
		return issueTLS(t, ca, id, time.Hour), nil
	}
	cfg.OnError = func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }
	r, err := NewRenewer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	// Jump past expiry: every failure from now on says the cert expired.
	testutil.WaitFor(t, 5*time.Second, "renewer waiting", func() bool { return clock.waiting() == 1 })
	clock.Advance(2 * time.Hour)
	for i := 0; i < 4; i++ {
		testutil.WaitFor(t, 5*time.Second, "renewer waiting after failure", func() bool { return clock.waiting() == 1 })
		clock.Advance(10 * time.Second)
	}
	testutil.WaitFor(t, 5*time.Second, "certificate swapped", func() bool {
		return r.Current().Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) != 0
	})
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 4 {
		t.Fatalf("%d errors reported, want 4: %v", len(errs), errs)
	}
	for i, err := range errs[:3] {
		if !errors.Is(err, unreachable) || !errors.Is(err, ErrCertificateExpired) || !strings.Contains(err.Error(), "node:w1") {
			t.Errorf("error %d: %v", i, err)
		}
	}
	if !strings.Contains(errs[3].Error(), "is for node:w2") {
		t.Errorf("wrong-identity error: %v", errs[3])
	}
	waits := clock.waitLog()
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
	if len(waits) < 5 {
		t.Fatalf("waits %v", waits)
	}
	for i, w := range want {
		if waits[i+1] != w {
			t.Errorf("backoff %d = %s, want %s (all: %v)", i, waits[i+1], w, waits)
		}
	}
}

func TestRenewerRefusesBadConfig(t *testing.T) {
	if _, err := NewRenewer(RenewerConfig{}); err == nil {
		t.Fatal("no Renew func accepted")
	}
	renew := func(context.Context) (tls.Certificate, error) { return tls.Certificate{}, nil }
	if _, err := NewRenewer(RenewerConfig{Renew: renew}); err == nil || !strings.Contains(err.Error(), "initial certificate") {
		t.Fatalf("no initial cert: %v", err)
	}
}
