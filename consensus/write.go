package consensus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// ErrIndeterminate: the write may or may not have been committed (leadership
// moved, or the leader became unreachable, after it was sent). Retrying a
// non-idempotent write blindly could apply it twice, so the caller decides.
var ErrIndeterminate = errors.New("write outcome unknown: leadership changed or leader unreachable after the write was sent")

// retryBackoff is the pause before retrying a write refused for a reason
// that guarantees it was not applied (no leader yet, not the leader).
const retryBackoff = 10 * time.Millisecond

// Put writes a key. With IfModRevision set it is conditional (0: the key
// must not exist) and fails with a *ConflictError.
func (s *Store) Put(ctx context.Context, req *storepb.PutRequest) (*storepb.PutResponse, error) {
	if err := validatePut(fieldOf("put"), req); err != nil {
		return nil, err
	}
	res, err := s.propose(ctx, storepb.Command_PUT, req)
	if err != nil {
		return nil, err
	}
	return res.GetPut(), nil
}

// Delete removes a key; ErrKeyNotFound when it does not exist.
func (s *Store) Delete(ctx context.Context, req *storepb.DeleteRequest) (*storepb.DeleteResponse, error) {
	if err := validateDelete(fieldOf("delete"), req); err != nil {
		return nil, err
	}
	res, err := s.propose(ctx, storepb.Command_DELETE, req)
	if err != nil {
		return nil, err
	}
	return res.GetDelete(), nil
}

// Txn runs an etcd-style transaction atomically.
func (s *Store) Txn(ctx context.Context, req *storepb.TxnRequest) (*storepb.TxnResponse, error) {
	if err := validateTxn(req, false); err != nil {
		return nil, err
	}
	res, err := s.propose(ctx, storepb.Command_TXN, req)
	if err != nil {
		return nil, err
	}
	return res.GetTxn(), nil
}

// MaxBatchTxns bounds the transactions of one Batch call.
const MaxBatchTxns = 2000

// maxEntryBytes bounds the transactions' encoded size in one Raft entry:
// a follower forwards the entry to the leader in one gRPC message, whose
// default limit is 4 MiB.
const maxEntryBytes = 2 << 20

// Batch commits independent transactions in one Raft entry (several when
// they exceed 2 MiB together). Each is applied in order as its own write
// (its own revision when it writes); results are per transaction, in
// order: an INVALID one is reported in its result and does not stop the
// others. The error is for the batch as a whole (not committed, or outcome
// unknown; with several entries, earlier ones may have committed).
func (s *Store) Batch(ctx context.Context, txns []*storepb.TxnRequest) ([]*storepb.CommandResult, error) {
	if len(txns) > MaxBatchTxns {
		return nil, fmt.Errorf("%w: batch of %d transactions exceeds %d", ErrInvalid, len(txns), MaxBatchTxns)
	}
	out := make([]*storepb.CommandResult, 0, len(txns))
	for len(txns) > 0 {
		n, size := 0, 0
		for n < len(txns) {
			sz := txns[n].SizeVT()
			if n > 0 && size+sz > maxEntryBytes {
				break
			}
			size += sz
			n++
		}
		res, err := s.propose(ctx, storepb.Command_BATCH, &storepb.BatchRequest{Txns: txns[:n]})
		if err != nil {
			return nil, err
		}
		got := res.GetBatch().GetResults()
		if len(got) != n {
			return nil, fmt.Errorf("%w: batch of %d returned %d results", ErrInvalid, n, len(got))
		}
		out = append(out, got...)
		txns = txns[n:]
	}
	return out, nil
}

func (s *Store) propose(ctx context.Context, t storepb.Command_Type, payload proto.Message) (*storepb.CommandResult, error) {
	start := time.Now()
	data, err := encodeCommand(t, payload)
	if err != nil {
		return nil, err
	}
	res, err := s.applyCommand(ctx, data)
	s.metrics.applySeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, err
	}
	return res, resultError(res)
}

// resultError turns an FSM result code into the package's errors.
func resultError(res *storepb.CommandResult) error {
	switch res.Code {
	case storepb.CommandResult_OK:
		return nil
	case storepb.CommandResult_CONFLICT:
		return fmt.Errorf("%w: %s", ErrConflict, res.Message)
	case storepb.CommandResult_NOT_FOUND:
		return fmt.Errorf("%w: %s", ErrKeyNotFound, res.Message)
	default:
		return fmt.Errorf("%w: %s", ErrInvalid, res.Message)
	}
}

// applyCommand commits an encoded command: on the leader through Raft, on a
// follower by forwarding it to the leader, then waiting until this node has
// applied it so the caller reads its own write here.
func (s *Store) applyCommand(ctx context.Context, data []byte) (*storepb.CommandResult, error) {
	ctx, cancel := s.withDefaultTimeout(ctx)
	defer cancel()
	for {
		if s.stopped() {
			return nil, ErrStopped
		}
		var res *storepb.CommandResult
		var err error
		if s.IsLeader() {
			res, _, err = s.applyLocal(ctx, data)
		} else {
			res, err = s.forward(ctx, data)
		}
		if err == nil || !errors.Is(err, errRetryable) {
			return res, err
		}
		// Not applied: wait for a leader, unless none can be elected.
		if qerr := s.noQuorum(ctx); qerr != nil {
			return nil, qerr
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (%v)", ErrNoLeader, ctx.Err())
		case <-time.After(retryBackoff):
		}
	}
}

// errRetryable marks failures that guarantee the command was not applied.
var errRetryable = errors.New("retryable")

func (s *Store) applyLocal(ctx context.Context, data []byte) (*storepb.CommandResult, uint64, error) {
	timeout := s.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	start := time.Now()
	f := s.raft.Apply(data, timeout)
	if err := s.await(f, timeout); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
			return nil, 0, fmt.Errorf("%w: %w", errRetryable, err)
		case errors.Is(err, raft.ErrEnqueueTimeout):
			return nil, 0, fmt.Errorf("%w: %v", ErrNoLeader, err)
		case errors.Is(err, raft.ErrRaftShutdown):
			return nil, 0, ErrStopped
		default:
			return nil, 0, fmt.Errorf("%w: %v", ErrIndeterminate, err)
		}
	}
	s.metrics.commitSeconds.Observe(time.Since(start).Seconds())
	res, ok := f.Response().(*storepb.CommandResult)
	if !ok {
		return nil, 0, fmt.Errorf("%w: FSM returned %T", ErrInvalid, f.Response())
	}
	return res, f.Index(), nil
}

func (s *Store) forward(ctx context.Context, data []byte) (*storepb.CommandResult, error) {
	// Taken before the leader is read: a change after this point closes it.
	leaderGone := s.leaderSeen.next()
	leaderID, addr := s.Leader()
	if addr == "" {
		return nil, fmt.Errorf("%w: %w", errRetryable, ErrNoLeader)
	}
	// A connection that is not ready means the command was never sent, so
	// failing here is safe to retry; after this point failures are ambiguous.
	client, err := s.peers.readyInternal(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errRetryable, err)
	}
	// A leader this node stops following (it fell silent: a heartbeat
	// timeout, or another node won an election) may never answer: give up
	// at once instead of at the caller's deadline. The command may have
	// reached it, so the outcome is unknown, not retryable.
	callCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-leaderGone:
			cancel()
		case <-callCtx.Done():
		}
	}()
	resp, err := client.Apply(callCtx, &storepb.ApplyRequest{Command: data})
	if err != nil {
		st, _ := status.FromError(err)
		switch {
		case isNotApplied(st):
			return nil, fmt.Errorf("%w: %w", errRetryable, ErrNotLeader)
		case ctx.Err() == nil && callCtx.Err() != nil:
			return nil, fmt.Errorf("%w: this node stopped following leader %s while the write was in flight", ErrIndeterminate, leaderID)
		case st.Code() == codes.DeadlineExceeded || st.Code() == codes.Canceled:
			return nil, fmt.Errorf("%w: %v", ErrIndeterminate, st.Message())
		}
		return nil, fmt.Errorf("%w: forwarding to leader %s: %v", ErrIndeterminate, addr, err)
	}
	if resp.Result == nil {
		return nil, fmt.Errorf("%w: leader returned no result", ErrIndeterminate)
	}
	// Read-your-writes on this node: wait until it has applied the entry.
	// The write is committed either way, so a timeout here is not an error.
	_ = s.fsm.applied.wait(ctx, resp.Index)
	return resp.Result, nil
}
