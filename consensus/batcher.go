package consensus

import (
	"context"
	"fmt"
	"sync"

	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// TxnBatcher is group commit for transactions: concurrent Txn calls that
// arrive while earlier ones are being committed are sent together as one
// Batch (one Raft entry, one forward from a follower). A lone call goes out
// at once as a plain Txn, so an idle store sees no added latency; under
// load, batches grow with the queue.
//
// Why on top of Raft's own batching: hashicorp/raft already puts queued
// entries in one disk write, but each entry still costs its own log record,
// replication encoding, FSM decode and, on a follower, its own forwarding
// call. The API server's writes (pod creates, status updates, heartbeats)
// are many and small, and that per-entry cost was a fifth of the control
// plane's CPU in the scheduler benchmark.
type TxnBatcher struct {
	store     *Store
	maxFlight int

	mu       sync.Mutex
	queue    []*queuedTxn
	inFlight int
}

type queuedTxn struct {
	ctx  context.Context
	req  *storepb.TxnRequest
	resp *storepb.TxnResponse
	err  error
	done chan struct{}
}

// NewTxnBatcher returns a batcher with at most maxInFlight batches being
// committed at once (at least 1).
func NewTxnBatcher(s *Store, maxInFlight int) *TxnBatcher {
	return &TxnBatcher{store: s, maxFlight: max(maxInFlight, 1)}
}

// Txn commits req as Store.Txn would, possibly in a batch with others. A
// call whose ctx ends before its batch is sent is not written; one whose
// ctx ends later returns ErrIndeterminate at once (as Store.Txn does), the
// batch going on without it.
func (b *TxnBatcher) Txn(ctx context.Context, req *storepb.TxnRequest) (*storepb.TxnResponse, error) {
	if err := validateTxn(req, false); err != nil {
		return nil, err
	}
	q := &queuedTxn{ctx: ctx, req: req, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, q)
	if b.inFlight < b.maxFlight {
		b.inFlight++
		go b.run()
	}
	b.mu.Unlock()
	select {
	case <-q.done:
		return q.resp, q.err
	case <-ctx.Done():
		// Not yet taken: take() drops it, nothing is written. Taken: it may
		// commit. The caller cannot tell which, so neither can we.
		return nil, fmt.Errorf("%w (%v)", ErrIndeterminate, ctx.Err())
	}
}

// run sends batches until the queue is empty.
func (b *TxnBatcher) run() {
	for {
		batch := b.take()
		if len(batch) == 0 {
			return
		}
		b.commit(batch)
	}
}

// take removes up to MaxBatchTxns live calls from the queue; when there
// are none it gives up its in-flight slot (under the same lock, so a call
// queued meanwhile starts a new run).
func (b *TxnBatcher) take() []*queuedTxn {
	b.mu.Lock()
	defer b.mu.Unlock()
	var batch []*queuedTxn
	for len(b.queue) > 0 && len(batch) < MaxBatchTxns {
		q := b.queue[0]
		b.queue[0] = nil
		b.queue = b.queue[1:]
		if err := q.ctx.Err(); err != nil {
			q.err = err
			close(q.done)
			continue
		}
		batch = append(batch, q)
	}
	if len(batch) == 0 {
		b.inFlight--
		b.queue = nil // drop the emptied backing array
	}
	return batch
}

func (b *TxnBatcher) commit(batch []*queuedTxn) {
	// The batch outlives any one caller's context: the callers wait for
	// the outcome, the store's apply timeout bounds it.
	ctx := context.Background()
	if len(batch) == 1 {
		q := batch[0]
		q.resp, q.err = b.store.Txn(ctx, q.req)
		close(q.done)
		return
	}
	reqs := make([]*storepb.TxnRequest, len(batch))
	for i, q := range batch {
		reqs[i] = q.req
	}
	results, err := b.store.Batch(ctx, reqs)
	for i, q := range batch {
		switch {
		case err != nil:
			q.err = err
		case results[i].GetCode() != storepb.CommandResult_OK:
			q.err = resultError(results[i])
		case results[i].GetTxn() == nil:
			q.err = fmt.Errorf("%w: batch result %d has no transaction response", ErrInvalid, i)
		default:
			q.resp = results[i].GetTxn()
		}
		close(q.done)
	}
}
