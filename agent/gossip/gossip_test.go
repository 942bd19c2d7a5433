package gossip_test

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/skiffhq/skiff/agent/gossip"
	"github.com/skiffhq/skiff/agent/gossip/gossiptest"
	"github.com/skiffhq/skiff/integration/testutil"
)

// detectBound is the failure-detection goal: a killed member is dead at
// every other member within it.
const detectBound = 3 * time.Second

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// quiet keeps memberlist's debug lines out of the test output.
var quiet = slog.New(slog.NewTextHandler(testWriter{}, &slog.HandlerOptions{Level: slog.LevelWarn}))

type testWriter struct{}

func (testWriter) Write(p []byte) (int, error) { return len(p), nil }

// start runs a member on 127.0.0.<host> with a free port.
func start(t *testing.T, name string, host int, key []byte, meta gossip.Meta, wrap func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport) *gossip.Gossip {
	t.Helper()
	ip := fmt.Sprintf("127.0.0.%d", host)
	if meta.Node == "" {
		meta = gossip.Meta{Role: gossip.RoleWorker, Node: name, IP: ip}
	}
	g, err := gossip.Start(gossip.Config{Name: name, BindAddr: ip, BindPort: 0, Key: key, Meta: meta, Logger: quiet, WrapTransport: wrap})
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { _ = g.Shutdown() })
	return g
}

// cluster starts n members named m0…m(n-1) (m0 a control node) and joins
// them through m0.
func cluster(t *testing.T, n int, key []byte, wraps map[int]*gossiptest.Dropper) []*gossip.Gossip {
	t.Helper()
	var ms []*gossip.Gossip
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("m%d", i)
		var meta gossip.Meta
		if i == 0 {
			meta = gossip.Meta{Role: gossip.RoleControl, Node: name, IP: "127.0.0.10", APIAddress: "127.0.0.10:7443"}
		} else {
			meta = gossip.Meta{Role: gossip.RoleWorker, Node: name, IP: fmt.Sprintf("127.0.0.%d", 10+i), PodCIDR: fmt.Sprintf("10.244.%d.0/24", i)}
		}
		var wrap func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
		if d := wraps[i]; d != nil {
			wrap = d.Wrap
		}
		g := start(t, name, 10+i, key, meta, wrap)
		if i > 0 {
			if _, err := g.Join(ms[0].Addr()); err != nil {
				t.Fatalf("%s join: %v", name, err)
			}
		}
		ms = append(ms, g)
	}
	// Forming is the precondition, not what is measured: a loaded machine
	// (a full test run on 2 cores) can take seconds to settle suspicions.
	testutil.WaitFor(t, 20*time.Second, "every member sees every member alive", func() bool {
		for _, g := range ms {
			for _, o := range ms {
				if m, ok := g.Member(o.Name()); !ok || m.State != gossip.StateAlive {
					return false
				}
			}
		}
		return true
	})
	return ms
}

func TestMembersJoinWithKeyAndCarryMeta(t *testing.T) {
	ms := cluster(t, 4, newKey(t), nil)
	for _, g := range ms {
		c, _ := g.Member("m0")
		if c.Meta.Keys == "" || noKeys(c.Meta) != (gossip.Meta{Role: gossip.RoleControl, Node: "m0", IP: "127.0.0.10", APIAddress: "127.0.0.10:7443"}) {
			t.Errorf("%s sees m0's meta %+v", g.Name(), c.Meta)
		}
		w, _ := g.Member("m2")
		if w.Meta.Keys == "" || noKeys(w.Meta) != (gossip.Meta{Role: gossip.RoleWorker, Node: "m2", IP: "127.0.0.12", PodCIDR: "10.244.2.0/24"}) {
			t.Errorf("%s sees m2's meta %+v", g.Name(), w.Meta)
		}
		if w.Addr != ms[2].Addr() {
			t.Errorf("%s sees m2 at %s, want %s", g.Name(), w.Addr, ms[2].Addr())
		}
	}
	// A changed pod range reaches everyone.
	next := gossip.Meta{Role: gossip.RoleWorker, Node: "m3", IP: "127.0.0.13", PodCIDR: "10.244.99.0/24"}
	if err := ms[3].SetMeta(next, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "m3's new pod range at every member", func() bool {
		for _, g := range ms {
			if m, _ := g.Member("m3"); noKeys(m.Meta) != next {
				return false
			}
		}
		return true
	})
}

func TestMemberWithoutKeyRefused(t *testing.T) {
	ms := cluster(t, 3, newKey(t), nil)
	// Another key.
	stranger := start(t, "stranger", 30, newKey(t), gossip.Meta{}, nil)
	if _, err := stranger.Join(ms[0].Addr()); !errors.Is(err, gossip.ErrJoin) {
		t.Fatalf("join with another key: err %v, want ErrJoin", err)
	}
	// No encryption at all (plain memberlist).
	mc := memberlist.DefaultLANConfig()
	mc.Name, mc.BindAddr, mc.BindPort, mc.AdvertisePort = "plain", "127.0.0.31", 0, 0
	mc.LogOutput = testWriter{}
	plain, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = plain.Shutdown() }()
	if n, err := plain.Join([]string{ms[0].Addr()}); err == nil || n != 0 {
		t.Fatalf("join without a key: joined %d, err %v; want refused", n, err)
	}
	// Neither reached any member's list, nor did members reach theirs.
	for _, g := range ms {
		for _, name := range []string{"stranger", "plain"} {
			if _, ok := g.Member(name); ok {
				t.Errorf("%s lists %s", g.Name(), name)
			}
		}
	}
	if n := plain.NumMembers(); n != 1 {
		t.Errorf("keyless member sees %d members, want only itself", n)
	}
	if len(stranger.Members()) != 1 {
		t.Errorf("member with another key sees %v, want only itself", stranger.Members())
	}
}

func TestKilledMemberDeadEverywhereWithinBound(t *testing.T) {
	ms := cluster(t, 5, newKey(t), nil)
	victim, others := ms[3], append(append([]*gossip.Gossip{}, ms[:3]...), ms[4:]...)
	killed := time.Now()
	if err := victim.Shutdown(); err != nil {
		t.Fatal(err)
	}
	detected := map[string]time.Duration{}
	testutil.WaitFor(t, 2*detectBound, "m3 dead at every other member", func() bool {
		for _, g := range others {
			if _, ok := detected[g.Name()]; ok {
				continue
			}
			if _, dead := g.DeadSince("m3"); dead {
				detected[g.Name()] = time.Since(killed)
			}
		}
		return len(detected) == len(others)
	})
	var worst time.Duration
	for _, d := range detected {
		worst = max(worst, d)
	}
	t.Logf("killed member dead at all %d others after %.2f s (first %v)", len(others), worst.Seconds(), detected)
	if worst > detectBound {
		t.Errorf("detection took %.2f s, bound %v", worst.Seconds(), detectBound)
	}
	// A graceful leave is Left, not Dead.
	if err := ms[4].Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "m4 left at m0", func() bool {
		m, _ := ms[0].Member("m4")
		return m.State == gossip.StateLeft
	})
	if _, dead := ms[0].DeadSince("m4"); dead {
		t.Error("a member that left is reported dead")
	}
	// Stats keeps its counts as states change: the same as counting the
	// members' states.
	if st := ms[0].Stats(); st.Alive != 3 || st.Dead != 1 || st.Left != 1 || st.DeathsSeen != 1 {
		t.Errorf("m0 stats %+v, want 3 alive (itself included), 1 dead, 1 left, 1 death seen; members %v", st, ms[0].Members())
	}
}

func TestPartitionFromOneObserverIsNotDeath(t *testing.T) {
	// m1 (the observer) and m2 cannot exchange a single packet; everyone
	// else reaches both.
	obs, cut := &gossiptest.Dropper{}, &gossiptest.Dropper{}
	ms := cluster(t, 5, newKey(t), map[int]*gossiptest.Dropper{1: obs, 2: cut})
	// m2 is cut off from m1 only, in both directions.
	since := map[string]time.Time{}
	for _, g := range ms {
		m, _ := g.Member("m2")
		since[g.Name()] = m.Since
	}
	obs.Block(ms[2].Addr())
	cut.Block(ms[1].Addr())
	// Positive signals that detection ran while the partition held: the
	// observer's direct probes of m2 were dropped, and a member killed after
	// the partition began was detected dead everywhere.
	testutil.WaitFor(t, 10*time.Second, "m1 tried to reach m2 directly", func() bool { return obs.Dropped() >= 10 })
	if err := ms[4].Shutdown(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 2*detectBound, "m4 dead at m0..m3", func() bool {
		for _, g := range ms[:4] {
			if _, dead := g.DeadSince("m4"); !dead {
				return false
			}
		}
		return true
	})
	atDeath := obs.Dropped()
	testutil.WaitFor(t, 10*time.Second, "m1 kept trying m2 after that", func() bool { return obs.Dropped() >= atDeath+5 })
	for _, g := range ms[:4] {
		m, _ := g.Member("m2")
		if m.State != gossip.StateAlive || !m.Since.Equal(since[g.Name()]) {
			t.Errorf("%s: m2 is %s since %v (was alive since %v): one observer's partition declared it dead", g.Name(), m.State, m.Since, since[g.Name()])
		}
	}
	t.Logf("m1→m2 packets and dials dropped: %d; m2 stayed alive at every member", obs.Dropped())

	// The same cut towards every member is a death: the injection works.
	for _, g := range []*gossip.Gossip{ms[0], ms[3]} {
		cut.Block(g.Addr())
	}
	testutil.WaitFor(t, 2*detectBound, "m2, cut off from everyone, dead at m0", func() bool {
		_, dead := ms[0].DeadSince("m2")
		return dead
	})
}

func TestStartRefusesBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  gossip.Config
		want error
	}{
		{"no key", gossip.Config{Name: "a", BindAddr: "127.0.0.1"}, gossip.ErrKey},
		{"short key", gossip.Config{Name: "a", BindAddr: "127.0.0.1", Key: []byte("short")}, gossip.ErrKey},
		{"no name", gossip.Config{BindAddr: "127.0.0.1", Key: make([]byte, 32)}, gossip.ErrConfig},
		{"bad bind", gossip.Config{Name: "a", BindAddr: "localhost:1", Key: make([]byte, 32)}, gossip.ErrConfig},
		{"huge meta", gossip.Config{Name: "a", BindAddr: "127.0.0.1", Key: make([]byte, 32), Meta: gossip.Meta{Node: string(make([]byte, 600))}}, gossip.ErrConfig},
	} {
		if _, err := gossip.Start(tc.cfg); !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
	}
}

// Rotating the key on a live cluster (install everywhere, use everywhere,
// remove everywhere) loses no member; afterwards only the new key joins.
func TestKeyRotationKeepsMembersAndRefusesOldKey(t *testing.T) {
	oldKey, newKey := newKey(t), newKey(t)
	ms := cluster(t, 3, oldKey, nil)
	since := map[string]time.Time{}
	for _, g := range ms {
		for _, o := range ms {
			m, _ := g.Member(o.Name())
			since[g.Name()+"/"+o.Name()] = m.Since
		}
	}
	step := func(what string, f func(*gossip.Gossip) error) {
		t.Helper()
		for _, g := range ms {
			if err := f(g); err != nil {
				t.Fatalf("%s on %s: %v", what, g.Name(), err)
			}
		}
	}
	step("install", func(g *gossip.Gossip) error { return g.InstallKey(newKey) })
	if err := ms[0].InstallKey(newKey[:16]); !errors.Is(err, gossip.ErrKey) {
		t.Fatalf("a third key during a rotation: %v, want ErrKey", err)
	}
	// Half-way: m0 encrypts with the new key, the others with the old one.
	if err := ms[0].UseKey(newKey); err != nil {
		t.Fatal(err)
	}
	late := start(t, "late", 40, oldKey, gossip.Meta{}, nil)
	if _, err := late.Join(ms[1].Addr()); err != nil {
		t.Fatalf("join with the old key mid-rotation: %v", err)
	}
	_ = late.Leave(time.Second)
	step("use", func(g *gossip.Gossip) error { return g.UseKey(newKey) })
	if err := ms[0].RemoveKey(newKey); !errors.Is(err, gossip.ErrKey) {
		t.Fatalf("removing the key in use: %v, want ErrKey", err)
	}
	step("remove", func(g *gossip.Gossip) error { return g.RemoveKey(oldKey) })
	for _, g := range ms {
		if g.KeyCount() != 1 {
			t.Fatalf("%s holds %d keys after the rotation", g.Name(), g.KeyCount())
		}
	}
	stale := start(t, "stale", 41, oldKey, gossip.Meta{}, nil)
	if _, err := stale.Join(ms[2].Addr()); !errors.Is(err, gossip.ErrJoin) {
		t.Fatalf("join with the removed key: %v, want ErrJoin", err)
	}
	fresh := start(t, "fresh", 42, newKey, gossip.Meta{}, nil)
	if _, err := fresh.Join(ms[2].Addr()); err != nil {
		t.Fatalf("join with the new key: %v", err)
	}
	testutil.WaitFor(t, 5*time.Second, "fresh alive at every member", func() bool {
		for _, g := range ms {
			if m, _ := g.Member("fresh"); m.State != gossip.StateAlive {
				return false
			}
		}
		return true
	})
	for _, g := range ms {
		for _, o := range ms {
			if m, _ := g.Member(o.Name()); m.State != gossip.StateAlive || !m.Since.Equal(since[g.Name()+"/"+o.Name()]) {
				t.Errorf("%s sees %s %s since %v during the rotation", g.Name(), o.Name(), m.State, m.Since)
			}
		}
	}
}

func noKeys(m gossip.Meta) gossip.Meta {
	m.Keys = ""
	return m
}

// ApplyKeys walks a member through a whole rotation in the order that
// keeps it talking to members a step behind, and announces the
// fingerprints; an empty ring or a bad key is refused.
func TestApplyKeysAnnouncesFingerprints(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	ms := cluster(t, 2, k1, nil)
	a, b := ms[0], ms[1]
	f1, f2 := gossip.KeyFingerprint(k1), gossip.KeyFingerprint(k2)
	for _, ring := range [][][]byte{{k1, k2}, {k2, k1}, {k2}} {
		for _, g := range ms {
			if err := g.ApplyKeys(ring, time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	testutil.WaitFor(t, 10*time.Second, "b to see a's fingerprints: only the new key", func() bool {
		x, _ := b.Member(a.Name())
		return x.Meta.Keys == f2 && x.State == gossip.StateAlive
	})
	if f1 == f2 || len(f2) != 16 {
		t.Errorf("fingerprints %q %q", f1, f2)
	}
	if err := a.ApplyKeys(nil, time.Second); !errors.Is(err, gossip.ErrKey) {
		t.Errorf("empty ring: %v", err)
	}
	if err := a.ApplyKeys([][]byte{[]byte("short")}, time.Second); !errors.Is(err, gossip.ErrKey) {
		t.Errorf("5-byte key: %v", err)
	}
}
