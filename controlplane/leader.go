package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Loop is one leader-only loop (the scheduler, a controller). Run works
// until ctx ends (leadership lost or shutdown) and returns nil then; an
// error means the loop failed and is restarted with backoff.
type Loop interface {
	Name() string
	Run(ctx context.Context) error
}

// Leadership is what the loops need from the store: leadership changes
// (true only once this node's state is current — after its barrier) and a
// way to give leadership up.
type Leadership interface {
	LeaderCh() <-chan bool
	TransferLeadership() error
}

// LeaderConfig tunes failure handling.
type LeaderConfig struct {
	// A loop failing MaxFailures times within FailureWindow makes this node
	// give up leadership: another node may do better (its disk, its
	// network), and a leader that cannot do its job must not hold it.
	MaxFailures   int
	FailureWindow time.Duration
	// Backoff between restarts of a failed loop doubles up to MaxBackoff.
	Backoff    time.Duration
	MaxBackoff time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// DefaultLeaderConfig returns the defaults.
func DefaultLeaderConfig() LeaderConfig {
	return LeaderConfig{MaxFailures: 5, FailureWindow: time.Minute, Backoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second, Logger: slog.Default()}
}

// LeaderLoops starts every registered loop when this node becomes leader
// and stops them all when it stops being leader, each loop with its own
// context. It is Nomad's leader.go shape: one place, not scattered checks.
type LeaderLoops struct {
	cfg      LeaderConfig
	lead     Leadership
	loops    []Loop
	running  prometheus.Gauge
	failures *prometheus.CounterVec
	stepDown prometheus.Counter
}

// NewLeaderLoops prepares the loops; Run drives them.
func NewLeaderLoops(cfg LeaderConfig, lead Leadership, loops ...Loop) *LeaderLoops {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	l := &LeaderLoops{cfg: cfg, lead: lead, loops: loops,
		running:  prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "skiff", Subsystem: "leader", Name: "loops_running", Help: "Leader-only loops running on this node."}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "skiff", Subsystem: "leader", Name: "loop_failures_total", Help: "Leader-only loop failures."}, []string{"loop"}),
		stepDown: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "skiff", Subsystem: "leader", Name: "step_downs_total", Help: "Times this node gave up leadership because a loop kept failing."}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(l.running, l.failures, l.stepDown)
	}
	return l
}

// Run follows leadership until ctx ends.
func (l *LeaderLoops) Run(ctx context.Context) error {
	var term *leaderTerm
	stop := func() {
		if term != nil {
			term.stop()
			term = nil
		}
	}
	defer stop()
	ch := l.lead.LeaderCh()
	for {
		select {
		case <-ctx.Done():
			return nil
		case isLeader := <-ch:
			stop()
			if isLeader {
				l.cfg.Logger.Info("leadership gained: starting leader loops", "loops", len(l.loops))
				term = l.start()
			} else {
				l.cfg.Logger.Info("leadership lost: leader loops stopped")
			}
		case name := <-l.giveUp(term):
			l.stepDown.Inc()
			l.cfg.Logger.Error("leader loop keeps failing: giving up leadership", "loop", name)
			stop()
			if err := l.lead.TransferLeadership(); err != nil {
				// Stay a leader without loops would be silent failure; report
				// it loudly and let the next leadership change restart them.
				l.cfg.Logger.Error("could not give up leadership", "err", err)
			}
		}
	}
}

func (l *LeaderLoops) giveUp(t *leaderTerm) <-chan string {
	if t == nil {
		return nil
	}
	return t.giveUp
}

// leaderTerm is one period of leadership: every loop with its own context.
type leaderTerm struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	giveUp chan string
}

func (l *LeaderLoops) start() *leaderTerm {
	ctx, cancel := context.WithCancel(context.Background())
	t := &leaderTerm{cancel: cancel, giveUp: make(chan string, len(l.loops))}
	for _, loop := range l.loops {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			l.supervise(ctx, loop, t.giveUp)
		}()
	}
	return t
}

func (t *leaderTerm) stop() {
	t.cancel()
	t.wg.Wait()
}

// supervise runs one loop, restarting it with backoff when it fails, and
// asks for a step-down when it fails too often.
func (l *LeaderLoops) supervise(ctx context.Context, loop Loop, giveUp chan<- string) {
	l.running.Inc()
	defer l.running.Dec()
	var failures []time.Time
	backoff := l.cfg.Backoff
	for {
		err := runLoop(ctx, loop)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("returned while still leader")
		}
		l.failures.WithLabelValues(loop.Name()).Inc()
		now := time.Now()
		failures = append(failures, now)
		for len(failures) > 0 && now.Sub(failures[0]) > l.cfg.FailureWindow {
			failures = failures[1:]
		}
		l.cfg.Logger.Warn("leader loop failed", "loop", loop.Name(), "err", err, "failures_in_window", len(failures))
		if len(failures) >= l.cfg.MaxFailures {
			giveUp <- loop.Name()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, l.cfg.MaxBackoff)
	}
}

// runLoop turns a panic in a loop's Run into an error: one bad object must
// not take the leader down with it. Panics in the goroutines a loop starts
// are its own to recover (ctrlkit.Base does it for every leader loop) and
// arrive here as Run's error.
func runLoop(ctx context.Context, loop Loop) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return loop.Run(ctx)
}
