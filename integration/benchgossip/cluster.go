package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/skiffhq/skiff/agent/gossip"
	"github.com/skiffhq/skiff/agent/gossip/gossiptest"
)

// leaderName is the member standing for the Raft leader's control node:
// the one whose verdict (DeadSince, nodelifecycle's MemberHealth) turns a
// worker NotReady.
const leaderName = "control-0"

// cluster is n gossip members on loopback in this process, encrypted with
// one key, each behind a Lossy transport.
type cluster struct {
	timing gossip.Timing
	key    []byte
	log    *slog.Logger

	mu      sync.Mutex
	members map[string]*gossip.Gossip
	// addrs are the members' gossip addresses, read once at start: c.mu
	// is not held while calling into a member (a call that waits for a
	// member's locks would stall every caller of c.mu behind it).
	addrs map[string]string
	lossy map[string]*gossiptest.Lossy
	// deaths holds every (observer, member) Dead event, in a shard per
	// observer (see deathLog).
	deaths []*deathLog
	next   int // name suffix of the next member started
	// ev counts memberlist's warnings that a member fell behind and the
	// failure detector's verdicts.
	ev events
	// resyncs counts members made to push/pull with the leader while the
	// cluster formed (see syncAfter).
	resyncs atomic.Int64
}

type death struct {
	observer, member string
	at               time.Time
}

// deathLog is one member's Dead events. memberlist calls OnChange with
// the member's own node lock held, so a lock shared by every member here
// would tie them together: while one waits for it, its acks wait too, and
// in a cascade (hundreds of deaths a second) that is every member.
type deathLog struct {
	mu     sync.Mutex
	deaths []death
}

func newCluster(timing gossip.Timing) (*cluster, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	c := &cluster{timing: timing, key: key, members: map[string]*gossip.Gossip{}, addrs: map[string]string{}, lossy: map[string]*gossiptest.Lossy{}}
	// Without BENCH_GOSSIP_LOG the warnings are only counted: a text
	// handler, even into io.Discard, formats under one lock that every
	// member would share (memberlist logs some warnings with its node
	// lock held).
	var text slog.Handler
	if benchLog != io.Discard {
		text = slog.NewTextHandler(benchLog, &slog.HandlerOptions{Level: slog.LevelWarn})
	}
	c.log = slog.New(countingHandler{Handler: text, ev: &c.ev})
	return c, nil
}

// add starts a member and joins it through the leader; the first member
// is the leader.
func (c *cluster) add() (*gossip.Gossip, error) {
	c.mu.Lock()
	name, role := fmt.Sprintf("worker-%d", c.next), gossip.RoleWorker
	if c.next == 0 {
		name, role = leaderName, gossip.RoleControl
	}
	c.next++
	c.mu.Unlock()
	l := &gossiptest.Lossy{}
	dl := &deathLog{}
	g, err := gossip.Start(gossip.Config{Name: name, BindAddr: "127.0.0.1", BindPort: 0, Key: c.key,
		Meta: gossip.Meta{Role: role, Node: name, IP: "127.0.0.1"}, Timing: c.timing, Logger: c.log,
		WrapTransport: func(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport { return l.Wrap(t) },
		OnChange: func(m gossip.Member) {
			if m.State == gossip.StateDead {
				dl.mu.Lock()
				dl.deaths = append(dl.deaths, death{observer: name, member: m.Name, at: m.Since})
				dl.mu.Unlock()
			}
		}})
	if err != nil {
		return nil, err
	}
	if name != leaderName {
		// Through the leader (a Join is a push/pull of the whole member
		// list with each address given: one is enough), then, should the
		// busy leader's push/pull time out, through it and two others.
		var err error
		for attempt := range 5 {
			if _, err = g.Join(c.seeds(1 + 2*min(attempt, 1))...); err == nil {
				break
			}
			time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
		}
		if err != nil {
			_ = g.Shutdown()
			return nil, err
		}
	}
	addr := g.Addr()
	c.mu.Lock()
	c.members[name], c.lossy[name], c.addrs[name] = g, l, addr
	c.deaths = append(c.deaths, dl)
	c.mu.Unlock()
	return g, nil
}

// waveSize is how many members join before the bench waits for every
// member to see all of them alive and for the process to be calm again.
// A join is a broadcast storm in this process. memberlist gossips only
// when it has something queued, so an idle member sends no gossip at all;
// ~100 ms after a join every member has the joiner's alive message queued
// and sends it in 4 packets every 100 ms (LANTiming) until it has gone out
// RetransmitMult × log10 n = 12 times — n × 12 packets, each encrypted with
// a fresh AES-GCM, sent, decrypted and decoded, within ~300 ms — while the
// joiner re-gossips all n alive states it merged. On its own machine a
// member's share of that is a dozen packets; here the n members' shares
// land on the same 2 cores at once. Traced (-capture) at 247, 308 and 433
// members: 115-150 ms after a wave of 3-5 began, every member's gossip
// tick had packets to send, the process went from 0.3-0.7 to 1.6-1.9
// cores (gossip sends, alive handling, and the garbage collector marking
// the members' n² node states), UDP read loops queued by the hundred, the
// first direct probes timed out ~350 ms after the wave began, and their
// suspicions (each an O(n) broadcast again) started the cascade. The
// wave is sized to keep wave × n under 400: 16 at 25 members, 4 at 100, 2
// at 200, 1 from 201 (single joins at 400 members, quiet machine: +0.1-0.15
// cores for 2 s, at most 180 runnable goroutines, scheduler p99 ≤ 10 ms).
func waveSize(n int) int { return max(1, min(25, 400/max(n, 1))) }

// calmFor bounds how long a wave waits for the process to be calm (see
// waitCalm) before the next wave joins anyway.
const calmFor = 20 * time.Second

// waitCalm waits (at most within) until a half-second passes in which the
// Go scheduler's p99 latency stays under 20 ms and no member suspects
// another: the previous wave's joiners re-gossip the whole member list for
// seconds after every member sees them, and a wave joining into that
// burst is what starts a cascade. Real members each have their own CPU;
// this process has all of them to share.
//
// Once calm, it collects garbage (runtime.GC) before returning. The
// members' node states are n² in this one process (~120 MB live at 424
// members) and the garbage collector is triggered by the sum of their
// allocations, so a cycle tends to start inside the very storm the bench
// is about to cause: traced at 424 members on a quiet machine, a single
// join's storm held the process at 1.3-1.5 cores and the GC mark phase
// it set off ~375 ms in took it to 1.9, and direct probes timed out. A
// member on its own machine collects only its own n states, on its own
// CPU. Collected in the calm, the next cycle is GOGC % of the live heap
// of allocation away (see gcPercent), past a storm's. It collects only
// when half of that headroom is used: a full collection of the n² states
// every wave (~160 MB at 470 members, every second) cost 0.2-0.3 cores.
// Near 470 members the collection itself takes both cores for ~0.4 s and
// started a cascade when the last joiner was still re-gossiping: at that
// size one process has no moment calm enough (BENCHMARKS.md, fifth round).
func (c *cluster) waitCalm(within time.Duration) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		before, suspects := schedLatencies(), c.ev.suspects.Load()
		time.Sleep(500 * time.Millisecond)
		_, p99, _ := histDelta(before, schedLatencies())
		if p99 <= 20*time.Millisecond && c.ev.suspects.Load() == suspects {
			if gcHeadroomHalfUsed() {
				runtime.GC()
			}
			return
		}
	}
}

// gcHeadroomHalfUsed reports whether the heap has used half of the room
// left before the next garbage collection starts on its own.
func gcHeadroomHalfUsed() bool {
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}, {Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	for _, v := range s {
		if v.Value.Kind() != metrics.KindUint64 {
			return true
		}
	}
	goal, live, now := s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64()
	return goal <= live || now >= live+(goal-live)/2
}

// grow starts members until there are n, in waves of waveSize (at most 4
// joining at a time), and after each wave waits until every member sees
// all members so far alive and the process is calm again (waitCalm).
func (c *cluster) grow(n int, within time.Duration) error {
	if c.size() == 0 {
		if _, err := c.add(); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(within)
	cpu := startCPU()
	for c.size() < n {
		target := min(n, c.size()+waveSize(c.size()))
		if progress != nil {
			fmt.Fprintf(progress, "benchgossip: wave to %d members starts (%s)\n", target, time.Now().UTC().Format("15:04:05.000"))
		}
		sem := make(chan struct{}, 4)
		var wg sync.WaitGroup
		errs := make(chan error, target)
		for i := c.size(); i < target; i++ {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if _, err := c.add(); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			return fmt.Errorf("start member: %w", err)
		}
		least, dead := target, 0
		nextSync := time.Now().Add(syncAfter)
		err := waitFor(time.Until(deadline), fmt.Sprintf("every member to see %d alive", target), func() bool {
			least, dead = target, 0
			var behind []*gossip.Gossip
			for _, g := range c.live() {
				st := g.Stats()
				least, dead = min(least, st.Alive), max(dead, st.Dead)
				if st.Alive+st.Dead+st.Left < target {
					behind = append(behind, g) // does not know every member
				}
			}
			if len(behind) > 0 && time.Now().After(nextSync) {
				c.resync(behind[:min(len(behind), maxSyncs)])
				nextSync = time.Now().Add(syncAfter)
			}
			return least >= target
		})
		if err == nil {
			c.waitCalm(min(calmFor, time.Until(deadline)))
		}
		if progress != nil {
			fmt.Fprintf(progress, "benchgossip: wave to %d members ended %s after start (%s; dropped on full handler queues: %d; UDP probes failed: %d; syncs: %d)\n",
				target, time.Since(cpu.wall).Round(100*time.Millisecond), cpu, c.ev.queueFull.Load(), c.ev.udpFailed.Load(), c.resyncs.Load())
		}
		if err != nil {
			return fmt.Errorf("%w (the worst member sees %d alive; at most %d dead; messages dropped on full handler queues: %d; probes failed over UDP but not TCP: %d; members synced with the leader: %d; %s)",
				err, least, dead, c.ev.queueFull.Load(), c.ev.udpFailed.Load(), c.resyncs.Load(), cpu)
		}
	}
	return nil
}

// syncAfter is how long a wave may leave a member not knowing all the
// others before it syncs with the leader. Members that join at the same
// time can miss each other's alive broadcast: member X learns of member Z
// only from members that already knew X when they gossiped Z's alive,
// and each member sends that message a limited number of times
// (RetransmitMult × log10 n), so with 25 members joining together about
// one pair per wave at 500 members is missed, until the periodic push/pull
// (every 15–30 s × a factor that grows with the size, 75–150 s at 500)
// repairs it. A member behind after syncAfter does that push/pull now,
// with the leader, which every member joined through and so knows all.
const syncAfter = 3 * time.Second

// maxSyncs is how many members sync with the leader at once: each is a
// push/pull of the whole member list with the leader. Only members that
// do not know some member sync; one that holds a live member as dead
// waits for that member's refutation, which no sync would hasten.
const maxSyncs = 8

// resync makes each given member push/pull its state with the leader (a
// Join of a member already in the cluster is exactly that).
func (c *cluster) resync(behind []*gossip.Gossip) {
	c.mu.Lock()
	leader := c.addrs[leaderName]
	c.mu.Unlock()
	for _, g := range behind {
		if g.Name() == leaderName {
			continue
		}
		c.resyncs.Add(1)
		if _, err := g.Join(leader); err != nil {
			c.log.Warn("resync with the leader", "member", g.Name(), "err", err)
		}
	}
}

// seeds are the leader's address and up to k-1 other members'.
func (c *cluster) seeds(k int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := []string{c.addrs[leaderName]}
	for name, addr := range c.addrs { // map order: a different few each time
		if len(out) >= k {
			break
		}
		if name != leaderName {
			out = append(out, addr)
		}
	}
	return out
}

func (c *cluster) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.members)
}

func (c *cluster) leader() *gossip.Gossip {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[leaderName]
}

func (c *cluster) live() []*gossip.Gossip {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*gossip.Gossip, 0, len(c.members))
	for _, g := range c.members {
		out = append(out, g)
	}
	return out
}

// victim is any live member but the leader.
func (c *cluster) victim() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name := range c.members {
		if name != leaderName {
			return name
		}
	}
	return ""
}

// kill stops a member without a goodbye (a machine that died) and returns
// when.
func (c *cluster) kill(name string) time.Time {
	c.mu.Lock()
	g := c.members[name]
	delete(c.members, name)
	delete(c.lossy, name)
	delete(c.addrs, name)
	c.mu.Unlock()
	at := time.Now()
	_ = g.Shutdown()
	return at
}

func (c *cluster) setLoss(p float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lossy {
		l.SetRate(p)
	}
}

// falsePositives are the members declared Dead by any member at or after
// from while they were alive (not killed): each distinct one counts once.
func (c *cluster) falsePositives(from time.Time, killed map[string]bool) (members int, observations int) {
	c.mu.Lock()
	logs := slices.Clone(c.deaths)
	c.mu.Unlock()
	seen := map[string]bool{}
	for _, dl := range logs {
		dl.mu.Lock()
		for _, d := range dl.deaths {
			if d.at.Before(from) || killed[d.member] {
				continue
			}
			observations++
			seen[d.member] = true
		}
		dl.mu.Unlock()
	}
	return len(seen), observations
}

func (c *cluster) stop() {
	var wg sync.WaitGroup
	for _, g := range c.live() {
		wg.Go(func() { _ = g.Shutdown() })
	}
	wg.Wait()
}

// waitFor polls cond until it holds or within passes. It polls every
// 100 ms: a poll locks every member's view in turn, and polling faster
// slows the members' own handlers in a process of hundreds of them (the
// times measured come from the members' clocks, not from the poll).
func waitFor(within time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// progress, when set (-v), receives a line per join wave.
var progress io.Writer

// benchLog receives the members' warnings (BENCH_GOSSIP_LOG=1: stderr).
var benchLog io.Writer = io.Discard

func init() {
	if os.Getenv("BENCH_GOSSIP_LOG") != "" {
		benchLog = os.Stderr
	}
}
