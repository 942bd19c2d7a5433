package consensus

import (
	"bytes"
	"context"
	"fmt"
	"sort"

	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// rangeAt serves a range as of the past revision req.Revision. The store
// keeps only the latest record of each key, but the watch history holds
// every event since its oldest revision, each with the record it replaced
// (PrevKv). The state of a key at revision R is therefore the PrevKv of its
// first event after R (nil: it did not exist), or its current record when
// no event after R touched it. A read at a revision whose later events are
// no longer all held fails with ErrCompacted.
//
// Cost: one pass over the events after R (a binary search finds the first),
// then the tree walk of a latest read. Only reads at a past revision pay it:
// List pages after the first, while writes go on.
//
// Caller holds f.mu (read); the history is appended under f.mu, so it holds
// every event up to f.revision.
func (f *fsm) rangeAt(req *storepb.RangeRequest) (*storepb.RangeResponse, error) {
	rev := req.Revision
	start := req.Key
	if req.Prefix && len(req.ContinueAfter) > 0 && bytes.Compare(req.ContinueAfter, start) >= 0 {
		start = append(append([]byte{}, req.ContinueAfter...), 0) // the first key after it
	}
	past, err := f.hub.stateBefore(rev, req.Key, req.Prefix, start)
	if err != nil {
		return nil, err
	}
	resp := &storepb.RangeResponse{Revision: rev}
	if !req.Prefix {
		kv := f.get(req.Key)
		if old, changed := past[string(req.Key)]; changed {
			kv = old
		}
		if kv != nil {
			resp.Count = 1
			if !req.CountOnly {
				resp.Kvs = []*storepb.KeyValue{trimKV(kv, req.KeysOnly)}
			}
		}
		return resp, nil
	}
	// The keys changed after rev, in order: merged with the tree walk, each
	// one replaces (or removes, or re-inserts) its key.
	changed := make([]string, 0, len(past))
	for k := range past {
		changed = append(changed, k)
	}
	sort.Strings(changed)
	next := 0
	// emit adds one record of the result; false when the page is full.
	emit := func(kv *storepb.KeyValue) bool {
		if kv == nil {
			return true
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
	}
	full := false
	f.tree.AscendGreaterOrEqual(&storepb.KeyValue{Key: start}, func(kv *storepb.KeyValue) bool {
		if !bytes.HasPrefix(kv.Key, req.Key) {
			return false
		}
		// Keys that existed at rev but are gone now sort before this one.
		for next < len(changed) && changed[next] < string(kv.Key) {
			if !emit(past[changed[next]]) {
				full = true
				return false
			}
			next++
		}
		cur := kv
		if next < len(changed) && changed[next] == string(kv.Key) {
			cur = past[changed[next]]
			next++
		}
		if !emit(cur) {
			full = true
			return false
		}
		return true
	})
	for ; !full && next < len(changed); next++ {
		if !emit(past[changed[next]]) {
			break
		}
	}
	if resp.More {
		resp.NextKey = resp.Kvs[len(resp.Kvs)-1].Key
	}
	return resp, nil
}

// stateBefore returns, for every key matching key/prefix (from start on)
// that changed after revision rev, its record as of rev (nil when it did
// not exist then). It
// fails with ErrCompacted when the history no longer holds every event
// after rev.
func (h *watchHub) stateBefore(rev int64, key []byte, prefix bool, start []byte) (map[string]*storepb.KeyValue, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if rev+1 < h.oldestRev {
		return nil, fmt.Errorf("read at revision %d: the history kept starts after revision %d, %w", rev, h.oldestRev-1, ErrCompacted)
	}
	past := map[string]*storepb.KeyValue{}
	i := sort.Search(h.n, func(i int) bool { return eventRevision(h.at(i)) > rev })
	for ; i < h.n; i++ {
		e := h.at(i)
		if !matches(e.Kv.Key, key, prefix) || (prefix && bytes.Compare(e.Kv.Key, start) < 0) {
			continue
		}
		if _, seen := past[string(e.Kv.Key)]; !seen {
			past[string(e.Kv.Key)] = e.PrevKv
		}
	}
	return past, nil
}

// waitRevision returns once this node has applied revision rev, or fails
// with ErrNoLeader when ctx ends first (the node is cut off or far behind).
func (h *watchHub) waitRevision(ctx context.Context, rev int64) error {
	for {
		h.mu.RLock()
		cur, wake := h.current, h.wake
		h.mu.RUnlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("%w: this node has applied revision %d, waiting for %d: %v", ErrNoLeader, cur, rev, ctx.Err())
		}
	}
}
