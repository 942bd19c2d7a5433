package main

import (
	"fmt"
	"slices"
	"time"

	"github.com/skiffhq/skiff/agent/gossip"
)

// params are one run's settings.
type params struct {
	sizes []int
	// rounds is how many members die one after the other at each size
	// (LANTiming); anchorRounds the same with memberlist's defaults.
	rounds, anchorRounds int
	// loss is how long the 5 % packet-loss phase lasts at each size.
	loss time.Duration
	// lossRate is the share of UDP packets dropped in that phase.
	lossRate float64
	// onlyAnchor skips the LANTiming runs.
	onlyAnchor bool
	// steady is how long the formed cluster runs idle (no death, no loss)
	// while its CPU is measured; cpuProfile, when set, is where a CPU
	// profile of that span goes (suffixed with the size and timing).
	steady     time.Duration
	cpuProfile string
}

// result is what one size and timing measured.
type result struct {
	members  int
	timing   string
	samples  int
	detect   []time.Duration // death → the leader's member confirms it dead
	converge []time.Duration // death → every live member knows
	// falseDetect: live members declared dead while members died;
	// falseLoss: live members declared dead under packet loss (-1: not run).
	falseDetect, falseLoss int
	lossSent, lossDropped  int64
	// lateDeaths and lateLoss are how late 10 ms timers woke (p99, worst)
	// while members died and in the loss phase: the machine's stalls.
	lateDeaths, lateLoss [2]time.Duration
	// cpu is the CPU share this process got over the size's run.
	cpu string
	// steadyCPU is the CPU the formed cluster used per member per second
	// with nobody dying and no loss (0: not measured).
	steadyCPU time.Duration
}

func (r result) falsePositives() int { return r.falseDetect + max(r.falseLoss, 0) }

// measure runs one size with one timing: members die one at a time (each
// replaced by a new member, so the size stays n), then, when loss > 0, the
// whole cluster runs with packet loss and nobody dying.
func measure(n int, name string, timing gossip.Timing, rounds int, loss time.Duration, p params) (res result, err error) {
	lossRate := p.lossRate
	res = result{members: n, timing: name, falseLoss: -1}
	c, err := newCluster(timing)
	if err != nil {
		return res, err
	}
	defer c.stop()
	if progress != nil {
		mon := startMonitor(c, progress, time.Second)
		defer mon.Stop()
	}
	cpu := startCPU()
	defer func() {
		res.cpu = fmt.Sprintf("%s; messages dropped on full handler queues: %d; probes failed over UDP but not TCP: %d; members synced with the leader while forming: %d",
			cpu, c.ev.queueFull.Load(), c.ev.udpFailed.Load(), c.resyncs.Load())
	}()
	// Forming may take a while on a busy machine: a live member declared
	// dead while the others join comes back when its refutation arrives;
	// from 201 members they join one at a time (waveSize), ~1 s each.
	if err := c.grow(n, time.Duration(n)*time.Second+120*time.Second); err != nil {
		return res, err
	}
	if p.steady > 0 {
		if res.steadyCPU, err = c.steadyCPU(p.steady, profilePath(p.cpuProfile, n, name)); err != nil {
			return res, err
		}
	}
	// The longest a death may take: every member knows well within the
	// suspicion timeout's upper bound plus a few probe rounds.
	bound := 20*timing.ProbeInterval*time.Duration(timing.SuspicionMult*timing.SuspicionMaxTimeoutMult) + 10*time.Second
	killed := map[string]bool{}
	start := time.Now()
	phase(fmt.Sprintf("%d members formed; %d deaths", n, rounds))
	for range rounds {
		// The last round's replacement joined with a broadcast storm (see
		// waveSize); the next death waits for it to pass, as a wave does,
		// so that one round's storms do not pile onto the next's.
		c.waitCalm(10 * time.Second)
		victim := c.victim()
		killed[victim] = true
		at := c.kill(victim)
		leader := c.leader()
		var detected, converged time.Time
		err := waitFor(bound, victim+" dead at every member", func() bool {
			if detected.IsZero() {
				// The decision nodelifecycle takes: MemberHealth.DeadSince.
				if since, dead := leader.DeadSince(victim); dead {
					detected = since
				}
			}
			last := time.Time{}
			for _, g := range c.live() {
				since, dead := g.DeadSince(victim)
				if !dead {
					return false
				}
				if since.After(last) {
					last = since
				}
			}
			converged = last
			return !detected.IsZero()
		})
		if err != nil {
			return res, err
		}
		res.detect = append(res.detect, detected.Sub(at))
		res.converge = append(res.converge, converged.Sub(at))
		if _, err := c.add(); err != nil {
			return res, err
		}
		if err := waitFor(bound, fmt.Sprintf("the leader to see %d alive", n), func() bool { return leader.Stats().Alive >= n }); err != nil {
			return res, err
		}
	}
	res.samples = len(res.detect)
	res.falseDetect, _ = c.falsePositives(start, killed)
	res.lateDeaths[0], res.lateDeaths[1] = machineLateness.window(start, time.Now())
	if loss > 0 {
		c.waitCalm(10 * time.Second)
		from := time.Now()
		phase(fmt.Sprintf("%.0f %% loss for %s", lossRate*100, loss))
		c.setLoss(lossRate)
		time.Sleep(loss) // the phase itself: the cluster runs lossy for this long
		c.setLoss(0)
		// A suspicion raised just before the end runs its course.
		time.Sleep(2 * time.Duration(timing.SuspicionMult*timing.SuspicionMaxTimeoutMult) * timing.ProbeInterval)
		res.falseLoss, _ = c.falsePositives(from, killed)
		res.lateLoss[0], res.lateLoss[1] = machineLateness.window(from, time.Now())
		c.mu.Lock()
		for _, l := range c.lossy {
			res.lossSent += l.Sent()
			res.lossDropped += l.Dropped()
		}
		c.mu.Unlock()
	}
	return res, nil
}

// phase marks the start of a phase in the -v output.
func phase(what string) {
	if progress != nil {
		fmt.Fprintf(progress, "benchgossip: %s (%s)\n", what, time.Now().UTC().Format(time.TimeOnly))
	}
}

// pct is the q-quantile (nearest rank) of ds.
func pct(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) int64 { return d.Milliseconds() }
