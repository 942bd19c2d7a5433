package consensus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// Range reads a key or a prefix. By default the read is linearizable from
// any node: it reflects every write acknowledged before it started. With
// req.Stale it is served from this node's state as is. With req.Revision it
// is the state as of that revision (a revision this or another node has
// served, so one committed): this node first waits until it has applied it,
// then reads it from its history (ErrCompacted once that no longer reaches
// back to it).
func (s *Store) Range(ctx context.Context, req *storepb.RangeRequest) (*storepb.RangeResponse, error) {
	if err := validateRange(fieldOf("range"), req); err != nil {
		return nil, err
	}
	switch {
	case req.Revision > 0:
		ctx, cancel := s.withDefaultTimeout(ctx)
		defer cancel()
		if err := s.fsm.hub.waitRevision(ctx, req.Revision); err != nil {
			return nil, err
		}
	case !req.Stale:
		if err := s.Linearize(ctx); err != nil {
			return nil, err
		}
	}
	return s.fsm.rangeRead(req)
}

// Get reads one key linearizably; nil when it does not exist.
func (s *Store) Get(ctx context.Context, key []byte) (*storepb.KeyValue, int64, error) {
	resp, err := s.Range(ctx, &storepb.RangeRequest{Key: key})
	if err != nil {
		return nil, 0, err
	}
	if len(resp.Kvs) == 0 {
		return nil, resp.Revision, nil
	}
	return resp.Kvs[0], resp.Revision, nil
}

// Linearize returns once this node's state reflects every write committed
// before the call: the leader confirms it still leads (VerifyLeader) and
// hands out its commit index; this node waits until it has applied it.
func (s *Store) Linearize(ctx context.Context) error {
	ctx, cancel := s.withDefaultTimeout(ctx)
	defer cancel()
	idx, err := s.readIndex(ctx)
	if err != nil {
		return err
	}
	if err := s.fsm.applied.wait(ctx, idx); err != nil {
		return fmt.Errorf("%w: waiting to apply read index %d: %v", ErrNoLeader, idx, err)
	}
	return nil
}

// readIndex is the leader's commit index, confirmed. Without a leader it
// waits for the election (as writes do) while a quorum of voters answers,
// and fails at once when none can be elected (ErrNoQuorum); a read index
// asked of a leader this node stops following is asked again of the next.
func (s *Store) readIndex(ctx context.Context) (uint64, error) {
	for {
		if s.IsLeader() {
			return s.reads.get(ctx)
		}
		changed := s.leaderSeen.next()
		idx, err := s.followerReadIndex(ctx, changed)
		if err == nil || !errors.Is(err, errRetryable) {
			return idx, err
		}
		if qerr := s.noQuorum(ctx); qerr != nil {
			return 0, qerr
		}
		select {
		case <-changed:
		case <-time.After(leaderWaitPoll):
		case <-ctx.Done():
			return 0, fmt.Errorf("%w (%v)", ErrNoLeader, ctx.Err())
		}
	}
}

// leaderWaitPoll is how often a read waiting for an election checks again
// (a change of leader wakes it sooner).
const leaderWaitPoll = 50 * time.Millisecond

// followerReadIndex asks the leader for the read index. errRetryable:
// there is no leader, or it cannot be reached, or this node stopped
// following it (changed closed) during the call — a read is safe to ask
// again.
func (s *Store) followerReadIndex(ctx context.Context, changed <-chan struct{}) (uint64, error) {
	_, addr := s.Leader()
	if addr == "" {
		return 0, fmt.Errorf("%w: %w", errRetryable, ErrNoLeader)
	}
	client, err := s.peers.readyInternal(ctx, addr)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errRetryable, err)
	}
	callCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-changed:
			cancel()
		case <-callCtx.Done():
		}
	}()
	resp, err := client.ReadIndex(callCtx, &storepb.ReadIndexRequest{})
	if err != nil {
		if ctx.Err() == nil && callCtx.Err() != nil {
			return 0, fmt.Errorf("%w: stopped following leader %s", errRetryable, addr)
		}
		if st, ok := status.FromError(err); ok && st.Code() == codes.FailedPrecondition {
			// It no longer leads; this node learns the new leader soon.
			return 0, fmt.Errorf("%w: %w: %s", errRetryable, ErrNoLeader, st.Message())
		}
		return 0, fmt.Errorf("%w: read index from leader %s: %v", ErrNoLeader, addr, err)
	}
	return resp.Index, nil
}

// readIndexBatcher coalesces concurrent read-index requests on the leader:
// one VerifyLeader round serves every read that arrived before it began,
// as etcd does, so reads scale with clients instead of costing a heartbeat
// round each.
type readIndexBatcher struct {
	s       *Store
	mu      sync.Mutex
	waiting []chan readIndexResult
	kick    chan struct{}
}

type readIndexResult struct {
	index uint64
	err   error
}

func newReadIndexBatcher(s *Store) *readIndexBatcher {
	b := &readIndexBatcher{s: s, kick: make(chan struct{}, 1)}
	s.wg.Add(1)
	go b.loop()
	return b
}

func (b *readIndexBatcher) get(ctx context.Context) (uint64, error) {
	ch := make(chan readIndexResult, 1)
	b.mu.Lock()
	b.waiting = append(b.waiting, ch)
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
	select {
	case r := <-ch:
		return r.index, r.err
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: read index: %v", ErrNoLeader, ctx.Err())
	}
}

func (b *readIndexBatcher) loop() {
	defer b.s.wg.Done()
	for {
		select {
		case <-b.s.stop:
			b.fail(ErrStopped)
			return
		case <-b.kick:
		}
		b.mu.Lock()
		batch := b.waiting
		b.waiting = nil
		b.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		idx, err := b.s.leaderReadIndex()
		for _, ch := range batch {
			ch <- readIndexResult{idx, err}
		}
	}
}

func (b *readIndexBatcher) fail(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ch := range b.waiting {
		ch <- readIndexResult{0, err}
	}
	b.waiting = nil
}

// leaderReadIndex is the read index on the leader. It is valid only once the
// leader has committed an entry of its own term (its NOOP): before that its
// commit index may lag entries the previous leader committed.
func (s *Store) leaderReadIndex() (uint64, error) {
	if err := s.leader.waitReady(s.stop, s.cfg.ElectionTimeout*4); err != nil {
		return 0, err
	}
	idx := s.raft.CommitIndex()
	if err := s.await(s.raft.VerifyLeader(), s.cfg.ElectionTimeout*4); err != nil {
		return 0, readIndexError(err)
	}
	return idx, nil
}

// WatchOption tunes a watch.
type WatchOption func(*watchOptions)

type watchOptions struct{ progress time.Duration }

// WithProgressNotify makes a quiet watcher send an empty batch with the
// revision it has seen up to, at most every interval (etcd's progress
// notifications; the API turns them into BOOKMARK events).
func WithProgressNotify(interval time.Duration) WatchOption {
	return func(o *watchOptions) { o.progress = interval }
}

// Watch streams events for a key or prefix from startRev (0: from the next
// write). A startRev older than the history kept fails with ErrCompacted.
func (s *Store) Watch(ctx context.Context, key []byte, prefix bool, startRev int64, opts ...WatchOption) (*Watcher, error) {
	var o watchOptions
	for _, opt := range opts {
		opt(&o)
	}
	if !prefix {
		if err := validateKey(fieldOf("watch.key"), key); err != nil {
			return nil, err
		}
	}
	if startRev < 0 {
		return nil, invalidf("watch.start_revision: %d is negative", startRev)
	}
	if startRev == 0 {
		// "From now" means from the linearizable present, not from this
		// node's possibly stale state.
		if err := s.Linearize(ctx); err != nil {
			return nil, err
		}
		startRev = s.fsm.currentRevision() + 1
	}
	from, err := s.fsm.hub.checkStart(startRev)
	if err != nil {
		return nil, err
	}
	return s.fsm.hub.startWatcher(ctx, key, prefix, from, s.cfg.WatchBuffer, o.progress, func() {}), nil
}

// readIndexError classifies a failed leadership check of a read. A read
// changes nothing, so whatever stopped the check (leadership lost to a new
// election, no answer in time) leaves it safe to retry: it is
// ErrLeadershipLost (Unavailable), never ErrNotLeader (FailedPrecondition),
// which clients do not retry.
func readIndexError(err error) error {
	if errors.Is(err, raft.ErrRaftShutdown) {
		return ErrStopped
	}
	return fmt.Errorf("%w: %v", ErrLeadershipLost, err)
}
