package consensus

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// leaderState tracks whether this node leads and is ready to serve
// linearizable reads (its NOOP of the current term is applied), and tells
// subscribers (the control plane's leader loops) about it.
type leaderState struct {
	mu      sync.Mutex
	ready   bool
	readyCh chan struct{} // closed once ready; replaced when leadership ends
	subs    []chan bool
}

func newLeaderState() *leaderState { return &leaderState{readyCh: make(chan struct{})} }

func (l *leaderState) setReady(ready bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ready == l.ready {
		return
	}
	l.ready = ready
	if ready {
		close(l.readyCh)
	} else {
		l.readyCh = make(chan struct{})
	}
	for _, ch := range l.subs {
		// Coalesce: a subscriber only needs the latest state.
		select {
		case <-ch:
		default:
		}
		ch <- ready
	}
}

func (l *leaderState) subscribe() <-chan bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch := make(chan bool, 1)
	if l.ready {
		ch <- true
	}
	l.subs = append(l.subs, ch)
	return ch
}

func (l *leaderState) waitReady(stop <-chan struct{}, timeout time.Duration) error {
	l.mu.Lock()
	ch := l.readyCh
	l.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-stop:
		return ErrStopped
	case <-time.After(timeout):
		return fmt.Errorf("%w: leader has not committed an entry of its term yet", ErrNoLeader)
	}
}

// startBackground runs the loops every node has: leadership tracking and
// peer health from Raft observations.
func (s *Store) startBackground() {
	obs := make(chan raft.Observation, 256)
	observer := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
			return true
		}
		return false
	})
	s.raft.RegisterObserver(observer)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.raft.DeregisterObserver(observer)
		var run *leaderRun
		stopLeader := func() {
			if run != nil {
				run.stop()
				run = nil
			}
			s.leader.setReady(false)
			s.metrics.isLeader.Set(0)
		}
		defer stopLeader()
		for {
			select {
			case <-s.stop:
				return
			case isLeader := <-s.raft.LeaderCh():
				stopLeader()
				// What this node learnt of its peers' reachability as
				// leader is stale as soon as leadership changes either
				// way (a deposed leader hears no more heartbeat results,
				// and would show healthy peers as failing for ever).
				s.health.reset()
				if isLeader {
					s.metrics.isLeader.Set(1)
					run = startLeaderRun(s.runLeader)
				}
			case o := <-obs:
				switch d := o.Data.(type) {
				case raft.LeaderObservation:
					s.metrics.leaderChanges.Inc()
					s.leaderSeen.changed()
					s.log.Info("leader changed", "leader", d.LeaderID, "address", d.LeaderAddr)
				case raft.FailedHeartbeatObservation:
					// One queued before this node stepped down must not
					// outlive the reset.
					if s.IsLeader() {
						s.health.failed(string(d.PeerID), d.LastContact)
					}
				case raft.ResumedHeartbeatObservation:
					s.health.resumed(string(d.PeerID))
				}
			}
		}
	}()
}

// leaderRun is one term's leader-only work, with its own context.
type leaderRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func startLeaderRun(fn func(context.Context)) *leaderRun {
	ctx, cancel := context.WithCancel(context.Background())
	r := &leaderRun{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		fn(ctx)
	}()
	return r
}

func (r *leaderRun) stop() {
	r.cancel()
	<-r.done
}

// runLeader is the store's own leader-only work: commit a NOOP of this term
// (a barrier after which reads are linearizable and state is current), then
// keep the voter set odd until leadership ends.
func (s *Store) runLeader(ctx context.Context) {
	noop, _ := encodeCommand(storepb.Command_NOOP, nil)
	for {
		_, _, err := s.applyLocal(ctx, noop)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retryBackoff):
		}
		if !s.IsLeader() {
			return
		}
	}
	s.log.Info("leader ready", "term", s.raft.CurrentTerm())
	s.leader.setReady(true)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if err := s.reconcileVoters(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("odd-quorum reconcile failed; will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-s.health.changed():
		}
	}
}

// peerHealth records which peers the leader currently fails to reach.
type peerHealth struct {
	mu      sync.Mutex
	failing map[string]time.Time
	notify  chan struct{}
}

func newPeerHealth() *peerHealth {
	return &peerHealth{failing: map[string]time.Time{}, notify: make(chan struct{}, 1)}
}

func (h *peerHealth) failed(id string, lastContact time.Time) {
	h.mu.Lock()
	h.failing[id] = lastContact
	h.mu.Unlock()
	h.poke()
}

func (h *peerHealth) resumed(id string) {
	h.mu.Lock()
	delete(h.failing, id)
	h.mu.Unlock()
	h.poke()
}

// reset forgets every failure: only a leader observes heartbeats, and
// one starting (or ending) its term has no current observations.
func (h *peerHealth) reset() {
	h.mu.Lock()
	clear(h.failing)
	h.mu.Unlock()
	h.poke()
}

func (h *peerHealth) poke() {
	select {
	case h.notify <- struct{}{}:
	default:
	}
}

func (h *peerHealth) changed() <-chan struct{} { return h.notify }

func (h *peerHealth) isFailing(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.failing[id]
	return ok
}

// leaderChange signals every change of the leader this node follows (or
// the loss of it), so a forwarded write in flight to a leader this node no
// longer follows need not wait for its deadline.
type leaderChange struct {
	mu sync.Mutex
	ch chan struct{} // closed at the next change
}

func newLeaderChange() *leaderChange { return &leaderChange{ch: make(chan struct{})} }

// next returns a channel closed at the next change of leader.
func (l *leaderChange) next() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ch
}

func (l *leaderChange) changed() {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.ch)
	l.ch = make(chan struct{})
}

// TransferLeadership asks Raft to hand leadership to another voter. The
// control plane calls it when one of its leader-only loops keeps failing:
// a leader that cannot do its work should not keep the job.
func (s *Store) TransferLeadership() error {
	if !s.IsLeader() {
		return ErrNotLeader
	}
	if err := s.await(s.raft.LeadershipTransfer(), s.cfg.ApplyTimeout); err != nil {
		return fmt.Errorf("leadership transfer: %w", mapRaftErr(err))
	}
	return nil
}
