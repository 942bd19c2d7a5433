package consensus

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/google/btree"
	"github.com/hashicorp/raft"

	"github.com/skiffhq/skiff/proto/codec"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// Limits on what one command may carry; larger input is refused as invalid
// before it reaches the log, and again by the FSM (defence in depth).
const (
	MaxKeyBytes   = 8 << 10
	MaxValueBytes = 3 << 19 // 1.5 MiB, as etcd; below gRPC's 4 MiB message limit
	MaxTxnOps     = 1024
	// CommandVersion is the envelope version this build writes and reads.
	CommandVersion = 1
)

func kvLess(a, b *storepb.KeyValue) bool { return bytes.Compare(a.Key, b.Key) < 0 }

// fsm is the MVCC key/value state machine. Records are immutable once
// stored: a write replaces the record, which lets snapshots and watch
// history share them without copying.
type fsm struct {
	mu   sync.RWMutex
	tree *btree.BTreeG[*storepb.KeyValue]
	// byKey indexes the tree's records for point reads: every
	// transaction's compares and puts read their keys first, and a hash
	// lookup costs a fraction of a tree descent through keys that share
	// long prefixes (/registry/pods/<ns>/…). Ranges and snapshots use the
	// tree. The *kvRef lets a write replace a record without re-inserting
	// (and so re-allocating) its key string.
	byKey    map[string]*kvRef
	revision int64

	applied *indexNotifier
	hub     *watchHub
}

type kvRef struct{ kv *storepb.KeyValue }

func newFSM(historyLimit int) *fsm {
	return &fsm{
		tree:    btree.NewG(32, kvLess),
		byKey:   map[string]*kvRef{},
		applied: newIndexNotifier(),
		hub:     newWatchHub(historyLimit),
	}
}

// Apply implements raft.FSM for a single entry.
func (f *fsm) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM: one lock hold and one watcher
// wake-up per batch.
func (f *fsm) ApplyBatch(logs []*raft.Log) []interface{} {
	results := make([]interface{}, len(logs))
	var events []*storepb.Event
	var last uint64
	f.mu.Lock()
	for i, l := range logs {
		last = l.Index
		if l.Type != raft.LogCommand {
			continue // configuration entries only advance the applied index
		}
		res, evs := f.applyCommand(l.Data)
		results[i] = res
		events = append(events, evs...)
	}
	// The history is appended under f.mu so that a reader holding it sees
	// the events of every revision up to f.revision (rangeAt undoes them).
	if len(events) > 0 {
		f.hub.append(events, f.revision)
	}
	f.mu.Unlock()
	if last > 0 {
		f.applied.advance(last)
	}
	return results
}

// applyCommand decodes and runs one command. Malformed input yields an
// INVALID result, never a panic: a bad entry in the log must not take down
// every node that replays it.
//
// The decode aliases data: stored keys and values point into the log
// entry instead of being copied twice (command, then payload). Nothing
// writes to an entry's Data once it is in the log: the leader's is a fresh
// buffer from encodeCommand, a follower's is decoded fresh from each
// AppendEntries, and a replay reads a copy out of raft-boltdb. A
// compressed payload is decoded into a fresh buffer of its own.
func (f *fsm) applyCommand(data []byte) (*storepb.CommandResult, []*storepb.Event) {
	var cmd storepb.Command
	if err := codec.UnmarshalAliasing(data, &cmd); err != nil {
		return invalidResult("undecodable command: %v", err), nil
	}
	if cmd.Version != CommandVersion {
		return invalidResult("command version %d not supported (want %d)", cmd.Version, CommandVersion), nil
	}
	payload, err := commandPayload(&cmd)
	if err != nil {
		return invalidResult("undecodable command: %v", err), nil
	}
	switch cmd.Type {
	case storepb.Command_NOOP:
		return &storepb.CommandResult{Revision: f.revision}, nil
	case storepb.Command_PUT:
		var req storepb.PutRequest
		if err := codec.UnmarshalAliasing(payload, &req); err != nil {
			return invalidResult("undecodable put: %v", err), nil
		}
		return f.applyTxn(singleOpTxn(&storepb.RequestOp{Op: &storepb.RequestOp_Put{Put: &req}}), putResult)
	case storepb.Command_DELETE:
		var req storepb.DeleteRequest
		if err := codec.UnmarshalAliasing(payload, &req); err != nil {
			return invalidResult("undecodable delete: %v", err), nil
		}
		return f.applyTxn(singleOpTxn(&storepb.RequestOp{Op: &storepb.RequestOp_Delete{Delete: &req}}), deleteResult)
	case storepb.Command_TXN:
		var req storepb.TxnRequest
		if err := codec.UnmarshalAliasing(payload, &req); err != nil {
			return invalidResult("undecodable txn: %v", err), nil
		}
		return f.applyTxn(&txnPlan{req: &req}, txnResult)
	case storepb.Command_BATCH:
		var req storepb.BatchRequest
		if err := codec.UnmarshalAliasing(payload, &req); err != nil {
			return invalidResult("undecodable batch: %v", err), nil
		}
		return f.applyBatch(&req)
	default:
		return invalidResult("unknown command type %d", cmd.Type), nil
	}
}

// txnPlan is a transaction plus how it reports failure: a conditional Put or
// Delete is a one-op plan whose failed precondition is a CONFLICT (a missing
// key to delete, NOT_FOUND), while a real Txn reports succeeded=false.
type txnPlan struct {
	req    *storepb.TxnRequest
	single bool
}

func singleOpTxn(op *storepb.RequestOp) *txnPlan {
	return &txnPlan{req: &storepb.TxnRequest{Success: []*storepb.RequestOp{op}}, single: true}
}

func invalidResult(format string, args ...any) *storepb.CommandResult {
	return &storepb.CommandResult{Code: storepb.CommandResult_INVALID, Message: fmt.Sprintf(format, args...)}
}

func putResult(r *storepb.CommandResult, t *storepb.TxnResponse) {
	r.Response = &storepb.CommandResult_Put{Put: t.Responses[0].GetPut()}
}
func deleteResult(r *storepb.CommandResult, t *storepb.TxnResponse) {
	r.Response = &storepb.CommandResult_Delete{Delete: t.Responses[0].GetDelete()}
}
func txnResult(r *storepb.CommandResult, t *storepb.TxnResponse) {
	r.Response = &storepb.CommandResult_Txn{Txn: t}
}

// applyBatch runs each transaction as its own command, in order. Caller
// holds f.mu.
func (f *fsm) applyBatch(req *storepb.BatchRequest) (*storepb.CommandResult, []*storepb.Event) {
	if len(req.Txns) > MaxBatchTxns {
		return invalidResult("batch of %d transactions exceeds %d", len(req.Txns), MaxBatchTxns), nil
	}
	out := &storepb.BatchResponse{Results: make([]*storepb.CommandResult, len(req.Txns))}
	var events []*storepb.Event
	for i, t := range req.Txns {
		res, evs := f.applyTxn(&txnPlan{req: t}, txnResult)
		out.Results[i] = res
		events = append(events, evs...)
	}
	return &storepb.CommandResult{Revision: f.revision, Response: &storepb.CommandResult_Batch{Batch: out}}, events
}

func (f *fsm) get(key []byte) *storepb.KeyValue {
	if ref := f.byKey[string(key)]; ref != nil {
		return ref.kv
	}
	return nil
}

// put stores kv in the tree and the index. Caller holds f.mu.
func (f *fsm) put(kv *storepb.KeyValue) {
	f.tree.ReplaceOrInsert(kv)
	if ref := f.byKey[string(kv.Key)]; ref != nil {
		ref.kv = kv
		return
	}
	f.byKey[string(kv.Key)] = &kvRef{kv: kv}
}

// indexTree rebuilds byKey from a whole tree (after a restore).
func indexTree(tree *btree.BTreeG[*storepb.KeyValue]) map[string]*kvRef {
	idx := make(map[string]*kvRef, tree.Len())
	tree.Ascend(func(kv *storepb.KeyValue) bool {
		idx[string(kv.Key)] = &kvRef{kv: kv}
		return true
	})
	return idx
}

// applyTxn evaluates compares, then runs one branch at revision+1 (only if
// it writes). Caller holds f.mu.
func (f *fsm) applyTxn(p *txnPlan, fill func(*storepb.CommandResult, *storepb.TxnResponse)) (*storepb.CommandResult, []*storepb.Event) {
	if err := validateTxn(p.req, p.single); err != nil {
		return invalidResult("%v", err), nil
	}
	ops := p.req.Success
	succeeded := true
	for _, c := range p.req.Compare {
		if !f.compare(c) {
			succeeded = false
			ops = p.req.Failure
			break
		}
	}
	if p.single {
		if res := f.checkOpPrecondition(ops[0]); res != nil {
			return res, nil
		}
	}
	nextRev := f.revision + 1
	writes := false
	var events []*storepb.Event
	resp := &storepb.TxnResponse{Succeeded: succeeded}
	for _, op := range ops {
		switch o := op.Op.(type) {
		case *storepb.RequestOp_Put:
			prev := f.get(o.Put.Key)
			kv := &storepb.KeyValue{Key: o.Put.Key, Value: o.Put.Value, ModRevision: nextRev, CreateRevision: nextRev, Version: 1}
			if prev != nil {
				kv.CreateRevision = prev.CreateRevision
				kv.Version = prev.Version + 1
			}
			f.put(kv)
			writes = true
			events = append(events, &storepb.Event{Type: storepb.Event_PUT, Kv: kv, PrevKv: prev})
			resp.Responses = append(resp.Responses, &storepb.ResponseOp{Op: &storepb.ResponseOp_Put{Put: &storepb.PutResponse{Revision: nextRev, Kv: kv, PrevKv: prev}}})
		case *storepb.RequestOp_Delete:
			prev, found := f.tree.Delete(&storepb.KeyValue{Key: o.Delete.Key})
			delete(f.byKey, string(o.Delete.Key))
			if !found {
				if p.single {
					return &storepb.CommandResult{Code: storepb.CommandResult_NOT_FOUND, Message: fmt.Sprintf("key %q not found", o.Delete.Key), Revision: f.revision}, nil
				}
				resp.Responses = append(resp.Responses, &storepb.ResponseOp{Op: &storepb.ResponseOp_Delete{Delete: &storepb.DeleteResponse{Revision: f.revision}}})
				continue
			}
			writes = true
			events = append(events, &storepb.Event{Type: storepb.Event_DELETE, Kv: &storepb.KeyValue{Key: o.Delete.Key, ModRevision: nextRev}, PrevKv: prev})
			resp.Responses = append(resp.Responses, &storepb.ResponseOp{Op: &storepb.ResponseOp_Delete{Delete: &storepb.DeleteResponse{Revision: nextRev, PrevKv: prev}}})
		case *storepb.RequestOp_Range:
			resp.Responses = append(resp.Responses, &storepb.ResponseOp{Op: &storepb.ResponseOp_Range{Range: f.rangeLocked(o.Range)}})
		}
	}
	if writes {
		f.revision = nextRev
		// A read inside a writing transaction sees the state at the new
		// revision only for keys written before it; report the txn revision.
		for _, r := range resp.Responses {
			if rr := r.GetRange(); rr != nil {
				rr.Revision = nextRev
			}
		}
	}
	resp.Revision = f.revision
	res := &storepb.CommandResult{Revision: f.revision}
	fill(res, resp)
	return res, events
}

// checkOpPrecondition checks an op's if_mod_revision. It returns a CONFLICT
// result when it fails, nil when it holds or there is none.
func (f *fsm) checkOpPrecondition(op *storepb.RequestOp) *storepb.CommandResult {
	var key []byte
	var want *int64
	switch o := op.Op.(type) {
	case *storepb.RequestOp_Put:
		key, want = o.Put.Key, o.Put.IfModRevision
	case *storepb.RequestOp_Delete:
		key, want = o.Delete.Key, o.Delete.IfModRevision
	default:
		return nil
	}
	if want == nil {
		return nil
	}
	var have int64
	if kv := f.get(key); kv != nil {
		have = kv.ModRevision
	}
	if have == *want {
		return nil
	}
	ce := &ConflictError{Key: string(key), Expected: *want, CurrentRevision: have}
	return &storepb.CommandResult{Code: storepb.CommandResult_CONFLICT, Message: ce.Error(), Revision: f.revision}
}

func (f *fsm) compare(c *storepb.Compare) bool {
	kv := f.get(c.Key)
	if c.Target == storepb.Compare_VALUE {
		var v []byte
		if kv != nil {
			v = kv.Value
		}
		return cmpResult(bytes.Compare(v, c.Value), c.Result)
	}
	var have int64
	if kv != nil {
		switch c.Target {
		case storepb.Compare_MOD_REVISION:
			have = kv.ModRevision
		case storepb.Compare_CREATE_REVISION:
			have = kv.CreateRevision
		case storepb.Compare_VERSION:
			have = kv.Version
		}
	}
	switch {
	case have < c.Number:
		return cmpResult(-1, c.Result)
	case have > c.Number:
		return cmpResult(1, c.Result)
	}
	return cmpResult(0, c.Result)
}

func cmpResult(c int, want storepb.Compare_Result) bool {
	switch want {
	case storepb.Compare_EQUAL:
		return c == 0
	case storepb.Compare_NOT_EQUAL:
		return c != 0
	case storepb.Compare_GREATER:
		return c > 0
	case storepb.Compare_LESS:
		return c < 0
	}
	return false
}

// rangeRead serves a read from local state, at req.Revision when it is set
// (see rangeAt).
func (f *fsm) rangeRead(req *storepb.RangeRequest) (*storepb.RangeResponse, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if req.Revision > 0 && req.Revision < f.revision {
		return f.rangeAt(req)
	}
	return f.rangeLocked(req), nil
}

func (f *fsm) rangeLocked(req *storepb.RangeRequest) *storepb.RangeResponse {
	resp := &storepb.RangeResponse{Revision: f.revision}
	if !req.Prefix {
		if kv := f.get(req.Key); kv != nil {
			resp.Count = 1
			if !req.CountOnly {
				resp.Kvs = []*storepb.KeyValue{trimKV(kv, req.KeysOnly)}
			}
		}
		return resp
	}
	start := req.Key
	if len(req.ContinueAfter) > 0 && bytes.Compare(req.ContinueAfter, start) >= 0 {
		start = append(append([]byte{}, req.ContinueAfter...), 0) // the first key after it
	}
	// Count is the number of keys returned, or with count_only, of all keys
	// under the prefix: counting a whole prefix for every page of a large
	// list would make paging quadratic.
	f.tree.AscendGreaterOrEqual(&storepb.KeyValue{Key: start}, func(kv *storepb.KeyValue) bool {
		if !bytes.HasPrefix(kv.Key, req.Key) {
			return false
		}
		if req.CountOnly {
			resp.Count++
			return true
		}
		if req.Limit > 0 && int64(len(resp.Kvs)) >= req.Limit {
			resp.More = true
			return false
		}
		resp.Kvs = append(resp.Kvs, trimKV(kv, req.KeysOnly))
		resp.Count++
		return true
	})
	if resp.More {
		resp.NextKey = resp.Kvs[len(resp.Kvs)-1].Key
	}
	return resp
}

func trimKV(kv *storepb.KeyValue, keysOnly bool) *storepb.KeyValue {
	if !keysOnly {
		return kv
	}
	return &storepb.KeyValue{Key: kv.Key, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version}
}

func (f *fsm) currentRevision() int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.revision
}
