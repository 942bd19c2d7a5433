package consensus

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// logFeeder drives an FSM with raw Raft log entries, as Raft would.
type logFeeder struct {
	t     testing.TB
	f     *fsm
	index uint64
}

func newFeeder(t *testing.T) *logFeeder { return &logFeeder{t: t, f: newFSM(1000)} }

func (l *logFeeder) raw(data []byte) *storepb.CommandResult {
	l.t.Helper()
	l.index++
	res, ok := l.f.Apply(&raft.Log{Index: l.index, Term: 1, Type: raft.LogCommand, Data: data}).(*storepb.CommandResult)
	if !ok {
		l.t.Fatalf("Apply returned %T", res)
	}
	return res
}

func (l *logFeeder) cmd(t storepb.Command_Type, m proto.Message) *storepb.CommandResult {
	l.t.Helper()
	data, err := encodeCommand(t, m)
	if err != nil {
		l.t.Fatal(err)
	}
	return l.raw(data)
}

func (l *logFeeder) put(k, v string, ifRev ...int64) *storepb.CommandResult {
	r := &storepb.PutRequest{Key: []byte(k), Value: []byte(v)}
	if len(ifRev) > 0 {
		r.IfModRevision = proto.Int64(ifRev[0])
	}
	return l.cmd(storepb.Command_PUT, r)
}

func (l *logFeeder) del(k string, ifRev ...int64) *storepb.CommandResult {
	r := &storepb.DeleteRequest{Key: []byte(k)}
	if len(ifRev) > 0 {
		r.IfModRevision = proto.Int64(ifRev[0])
	}
	return l.cmd(storepb.Command_DELETE, r)
}

func mustOK(t *testing.T, r *storepb.CommandResult) {
	t.Helper()
	if r.Code != storepb.CommandResult_OK {
		t.Fatalf("want OK, got %s: %s", r.Code, r.Message)
	}
}

func TestFSMRevisionsAndVersions(t *testing.T) {
	l := newFeeder(t)
	r := l.put("/a", "1")
	mustOK(t, r)
	if r.Revision != 1 || r.GetPut().Kv.CreateRevision != 1 || r.GetPut().Kv.Version != 1 {
		t.Fatalf("first put: %v", r)
	}
	mustOK(t, l.put("/b", "1"))
	r = l.put("/a", "2")
	kv := r.GetPut().Kv
	if r.Revision != 3 || kv.CreateRevision != 1 || kv.ModRevision != 3 || kv.Version != 2 {
		t.Fatalf("second put of /a: %v", kv)
	}
	if string(r.GetPut().PrevKv.Value) != "1" {
		t.Fatalf("prev value: %v", r.GetPut().PrevKv)
	}
	r = l.del("/a")
	mustOK(t, r)
	if r.Revision != 4 || string(r.GetDelete().PrevKv.Value) != "2" {
		t.Fatalf("delete: %v", r)
	}
	// Re-created keys start a new life: version 1, new create revision.
	kv = l.put("/a", "3").GetPut().Kv
	if kv.CreateRevision != 5 || kv.Version != 1 {
		t.Fatalf("re-create: %v", kv)
	}
	// A failed or no-op command does not move the revision.
	if r := l.del("/missing"); r.Code != storepb.CommandResult_NOT_FOUND || r.Revision != 5 {
		t.Fatalf("delete missing: %v", r)
	}
	if l.f.currentRevision() != 5 {
		t.Fatalf("revision %d, want 5", l.f.currentRevision())
	}
}

func TestFSMConditionalWrites(t *testing.T) {
	l := newFeeder(t)
	mustOK(t, l.put("/c", "1", 0)) // 0: must not exist
	r := l.put("/c", "2", 0)
	if r.Code != storepb.CommandResult_CONFLICT {
		t.Fatalf("create of existing key: %v", r)
	}
	if !errors.Is(resultError(r), ErrConflict) {
		t.Fatalf("result error %v is not ErrConflict", resultError(r))
	}
	if r := l.put("/c", "2", 7); r.Code != storepb.CommandResult_CONFLICT {
		t.Fatalf("stale revision accepted: %v", r)
	}
	mustOK(t, l.put("/c", "2", 1))
	if r := l.del("/c", 1); r.Code != storepb.CommandResult_CONFLICT {
		t.Fatalf("stale delete accepted: %v", r)
	}
	mustOK(t, l.del("/c", 2))
	if r := l.put("/c", "x", 2); r.Code != storepb.CommandResult_CONFLICT {
		t.Fatalf("update of deleted key accepted: %v", r)
	}
}

func TestFSMTxn(t *testing.T) {
	l := newFeeder(t)
	mustOK(t, l.put("/x", "1"))
	mustOK(t, l.put("/y", "1"))
	txn := &storepb.TxnRequest{
		Compare: []*storepb.Compare{
			{Key: []byte("/x"), Target: storepb.Compare_VALUE, Result: storepb.Compare_EQUAL, Value: []byte("1")},
			{Key: []byte("/y"), Target: storepb.Compare_MOD_REVISION, Result: storepb.Compare_EQUAL, Number: 2},
		},
		Success: []*storepb.RequestOp{
			{Op: &storepb.RequestOp_Put{Put: &storepb.PutRequest{Key: []byte("/x"), Value: []byte("2")}}},
			{Op: &storepb.RequestOp_Delete{Delete: &storepb.DeleteRequest{Key: []byte("/y")}}},
			{Op: &storepb.RequestOp_Range{Range: &storepb.RangeRequest{Key: []byte("/"), Prefix: true}}},
		},
		Failure: []*storepb.RequestOp{
			{Op: &storepb.RequestOp_Range{Range: &storepb.RangeRequest{Key: []byte("/x")}}},
		},
	}
	r := l.cmd(storepb.Command_TXN, txn)
	mustOK(t, r)
	tr := r.GetTxn()
	if !tr.Succeeded || tr.Revision != 3 || len(tr.Responses) != 3 {
		t.Fatalf("txn: %v", tr)
	}
	// Both writes share one revision; the range inside sees them.
	if tr.Responses[0].GetPut().Revision != 3 || tr.Responses[1].GetDelete().Revision != 3 {
		t.Fatalf("txn writes at different revisions: %v", tr)
	}
	if kvs := tr.Responses[2].GetRange().Kvs; len(kvs) != 1 || string(kvs[0].Value) != "2" {
		t.Fatalf("range inside txn: %v", kvs)
	}
	// Same txn again: compares fail, the failure branch reads, nothing moves.
	r = l.cmd(storepb.Command_TXN, txn)
	mustOK(t, r)
	if r.GetTxn().Succeeded || r.Revision != 3 || string(r.GetTxn().Responses[0].GetRange().Kvs[0].Value) != "2" {
		t.Fatalf("failed txn: %v", r.GetTxn())
	}
	// Preconditions inside a txn belong in compares.
	bad := &storepb.TxnRequest{Success: []*storepb.RequestOp{{Op: &storepb.RequestOp_Put{Put: &storepb.PutRequest{Key: []byte("/z"), IfModRevision: proto.Int64(0)}}}}}
	if r := l.cmd(storepb.Command_TXN, bad); r.Code != storepb.CommandResult_INVALID {
		t.Fatalf("if_mod_revision in txn: %v", r)
	}
}

func TestFSMRangePaging(t *testing.T) {
	l := newFeeder(t)
	for _, k := range []string{"/p/a", "/p/b", "/p/c", "/p/d", "/q/a"} {
		mustOK(t, l.put(k, "v"))
	}
	var got []string
	var after []byte
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		resp, _ := l.f.rangeRead(&storepb.RangeRequest{Key: []byte("/p/"), Prefix: true, Limit: 2, ContinueAfter: after})
		for _, kv := range resp.Kvs {
			got = append(got, string(kv.Key))
		}
		if !resp.More {
			break
		}
		after = resp.NextKey
	}
	if want := "/p/a /p/b /p/c /p/d"; joinKeys(got) != want {
		t.Fatalf("paged keys %q, want %q", joinKeys(got), want)
	}
	if n := mustRange(t, l.f, &storepb.RangeRequest{Key: []byte("/p/"), Prefix: true, CountOnly: true}).Count; n != 4 {
		t.Fatalf("count %d", n)
	}
	if kvs := mustRange(t, l.f, &storepb.RangeRequest{Key: []byte("/p/a"), KeysOnly: true}).Kvs; len(kvs) != 1 || kvs[0].Value != nil {
		t.Fatalf("keys only: %v", kvs)
	}
}

func joinKeys(ks []string) string {
	var b bytes.Buffer
	for i, k := range ks {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
	}
	return b.String()
}

func TestFSMWatchEventsWithPrevValue(t *testing.T) {
	l := newFeeder(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := l.f.hub.startWatcher(ctx, []byte("/w/"), true, 1, 16, 0, func() {})
	mustOK(t, l.put("/w/a", "1"))
	mustOK(t, l.put("/other", "x"))
	mustOK(t, l.put("/w/a", "2"))
	mustOK(t, l.del("/w/a"))
	var evs []*storepb.Event
	deadline := time.After(5 * time.Second)
	for len(evs) < 3 {
		select {
		case b := <-w.C:
			evs = append(evs, b.Events...)
		case <-deadline:
			t.Fatalf("got %d events, want 3", len(evs))
		}
	}
	if evs[0].Type != storepb.Event_PUT || evs[0].PrevKv != nil || evs[0].Kv.ModRevision != 1 {
		t.Fatalf("create event: %v", evs[0])
	}
	if string(evs[1].PrevKv.Value) != "1" || string(evs[1].Kv.Value) != "2" || evs[1].Kv.ModRevision != 3 {
		t.Fatalf("update event: %v", evs[1])
	}
	if evs[2].Type != storepb.Event_DELETE || string(evs[2].PrevKv.Value) != "2" || evs[2].Kv.ModRevision != 4 {
		t.Fatalf("delete event: %v", evs[2])
	}
	// Resume from a middle revision replays exactly the rest.
	w2 := l.f.hub.startWatcher(ctx, []byte("/w/a"), false, 3, 16, 0, func() {})
	b := <-w2.C
	if len(b.Events) != 2 || b.Events[0].Kv.ModRevision != 3 {
		t.Fatalf("resume from 3: %v", b.Events)
	}
}

func TestWatchCompactedAndSlowWatcher(t *testing.T) {
	l := &logFeeder{t: t, f: newFSM(50)}
	for i := 0; i < 60; i++ {
		mustOK(t, l.put("/k", "v"))
	}
	if _, err := l.f.hub.checkStart(3); !errors.Is(err, ErrCompacted) {
		t.Fatalf("start below history: want ErrCompacted, got %v", err)
	}
	if _, err := l.f.hub.checkStart(30); err != nil {
		t.Fatalf("start inside history: %v", err)
	}
	// A watcher whose consumer never reads stalls only itself; once the
	// history it needs is gone it ends with ErrWatcherTooSlow.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slow := l.f.hub.startWatcher(ctx, []byte("/k"), false, 55, 1, 0, func() {})
	fast := l.f.hub.startWatcher(ctx, []byte("/k"), false, 61, 256, 0, func() {})
	got := 0
	for i := 0; i < 100; i++ {
		mustOK(t, l.put("/k", "v")) // never blocks on the slow watcher
		// A live consumer keeps up: take this write's event before the next.
		for got < i+1 {
			select {
			case b, ok := <-fast.C:
				if !ok {
					t.Fatalf("fast watcher ended after %d events: %v", got, fast.Err())
				}
				got += len(b.Events)
			case <-time.After(5 * time.Second):
				t.Fatalf("fast watcher got %d of %d events", got, i+1)
			}
		}
	}
	for range slow.C { // drain until it is cut off
	}
	if !errors.Is(slow.Err(), ErrWatcherTooSlow) {
		t.Fatalf("slow watcher ended with %v, want ErrWatcherTooSlow", slow.Err())
	}
}

func TestFSMSnapshotRoundTripByteForByte(t *testing.T) {
	l := newFeeder(t)
	for i := 0; i < 300; i++ {
		mustOK(t, l.put(string(rune('a'+i%26))+"/"+string(rune('A'+i%7)), string(bytes.Repeat([]byte{byte(i)}, i%50))))
	}
	mustOK(t, l.del("a/A"))
	checkIndex(t, l.f)
	first := snapshotBytes(t, l.f)
	restored := newFSM(10)
	if err := restored.Restore(io.NopCloser(bytes.NewReader(first))); err != nil {
		t.Fatal(err)
	}
	checkIndex(t, restored)
	if restored.currentRevision() != l.f.currentRevision() || restored.applied.get() != l.f.applied.get() {
		t.Fatalf("restored revision %d applied %d, want %d %d", restored.currentRevision(), restored.applied.get(), l.f.currentRevision(), l.f.applied.get())
	}
	second := snapshotBytes(t, restored)
	if !bytes.Equal(first, second) {
		t.Fatalf("snapshot of the restored state differs: %d vs %d bytes", len(first), len(second))
	}
	// A snapshot taken while writes go on is the state at the time it was taken.
	snap, _ := l.f.Snapshot()
	mustOK(t, l.put("late", "x"))
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, snap.(*fsmSnapshot).tree, snap.(*fsmSnapshot).rev, snap.(*fsmSnapshot).applied); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), first) {
		t.Fatal("snapshot changed by a later write")
	}
}

// checkIndex: the point-read index holds exactly the tree's records.
func checkIndex(t *testing.T, f *fsm) {
	t.Helper()
	if len(f.byKey) != f.tree.Len() {
		t.Fatalf("index has %d keys, tree %d", len(f.byKey), f.tree.Len())
	}
	f.tree.Ascend(func(kv *storepb.KeyValue) bool {
		if got := f.get(kv.Key); got != kv {
			t.Fatalf("index entry of %q is %v, tree has %v", kv.Key, got, kv)
		}
		return true
	})
}

func snapshotBytes(t *testing.T, f *fsm) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	s := snap.(*fsmSnapshot)
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, s.tree, s.rev, s.applied); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestFSMRejectsMalformedCommands(t *testing.T) {
	l := newFeeder(t)
	big := bytes.Repeat([]byte("k"), MaxKeyBytes+1)
	cases := map[string][]byte{
		"garbage":        []byte{0xff, 0xff, 0xff, 0x01},
		"empty":          nil,
		"wrong version":  mustMarshal(t, &storepb.Command{Version: 99, Type: storepb.Command_PUT}),
		"unknown type":   mustMarshal(t, &storepb.Command{Version: CommandVersion, Type: 42}),
		"bad payload":    mustMarshal(t, &storepb.Command{Version: CommandVersion, Type: storepb.Command_PUT, Payload: []byte{0xff, 0x01}}),
		"bad s2 payload": mustMarshal(t, &storepb.Command{Version: CommandVersion, Type: storepb.Command_PUT, Payload: []byte{0x05, 0xff, 0xff}, Encoding: storepb.Command_S2}),
		"s2 too large":   mustMarshal(t, &storepb.Command{Version: CommandVersion, Type: storepb.Command_PUT, Payload: []byte{0xff, 0xff, 0xff, 0xff, 0x0f}, Encoding: storepb.Command_S2}),
		"unknown coding": mustMarshal(t, &storepb.Command{Version: CommandVersion, Type: storepb.Command_PUT, Encoding: 7}),
		"empty key":      mustCommand(t, storepb.Command_PUT, &storepb.PutRequest{Value: []byte("v")}),
		"key too long":   mustCommand(t, storepb.Command_PUT, &storepb.PutRequest{Key: big}),
		"negative rev":   mustCommand(t, storepb.Command_DELETE, &storepb.DeleteRequest{Key: []byte("k"), IfModRevision: proto.Int64(-1)}),
		"empty txn op":   mustCommand(t, storepb.Command_TXN, &storepb.TxnRequest{Success: []*storepb.RequestOp{{}}}),
		"bad compare":    mustCommand(t, storepb.Command_TXN, &storepb.TxnRequest{Compare: []*storepb.Compare{{Key: []byte("k"), Target: 9}}}),
		"compare no key": mustCommand(t, storepb.Command_TXN, &storepb.TxnRequest{Compare: []*storepb.Compare{{}}}),
		"negative limit": mustCommand(t, storepb.Command_TXN, &storepb.TxnRequest{Success: []*storepb.RequestOp{{Op: &storepb.RequestOp_Range{Range: &storepb.RangeRequest{Key: []byte("k"), Limit: -1}}}}}),
	}
	for name, data := range cases {
		r := l.raw(data)
		if r.Code != storepb.CommandResult_INVALID || r.Message == "" {
			t.Errorf("%s: want INVALID with a message, got %v", name, r)
		}
	}
	if l.f.currentRevision() != 0 {
		t.Fatalf("malformed commands moved the revision to %d", l.f.currentRevision())
	}
	// The FSM still works after all that.
	mustOK(t, l.put("/ok", "v"))
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustCommand(t *testing.T, ty storepb.Command_Type, m proto.Message) []byte {
	b, err := encodeCommand(ty, m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTargetVoters(t *testing.T) {
	for _, c := range []struct{ members, max, want int }{
		{1, 5, 1}, {2, 5, 1}, {3, 5, 3}, {4, 5, 3}, {5, 5, 5}, {6, 5, 5}, {7, 5, 5}, {7, 7, 7}, {8, 6, 5},
	} {
		if got := targetVoters(c.members, c.max); got != c.want {
			t.Errorf("targetVoters(%d, max %d) = %d, want %d", c.members, c.max, got, c.want)
		}
	}
}

func FuzzFSMApply(f *testing.F) {
	f.Add([]byte{0x08, 0x01, 0x10, 0x01})
	f.Add(mustCommandF(storepb.Command_PUT, &storepb.PutRequest{Key: []byte("k"), Value: []byte("v")}))
	f.Add(mustCommandF(storepb.Command_TXN, &storepb.TxnRequest{Compare: []*storepb.Compare{{Key: []byte("k")}}}))
	f.Add(mustCommandF(storepb.Command_BATCH, &storepb.BatchRequest{Txns: []*storepb.TxnRequest{{Compare: []*storepb.Compare{{Key: []byte("k")}}}, {}}}))
	f.Add(mustCommandF(storepb.Command_BATCH, similarPuts(64))) // S2-compressed
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := newFSM(16)
		res, ok := fs.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data}).(*storepb.CommandResult)
		if !ok || res == nil {
			t.Fatalf("no result for %x", data)
		}
		checkIndex(t, fs)
	})
}

func mustCommandF(ty storepb.Command_Type, m proto.Message) []byte {
	b, _ := encodeCommand(ty, m)
	return b
}

func TestWatchProgressNotify(t *testing.T) {
	l := newFeeder(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := l.f.hub.startWatcher(ctx, []byte("/quiet/"), true, 1, 16, 20*time.Millisecond, func() {})
	for i := 0; i < 5; i++ {
		mustOK(t, l.put("/busy", "v"))
	}
	// Nothing under /quiet/ happened, but the watcher learns it has seen
	// everything up to revision 5.
	deadline := time.After(5 * time.Second)
	for {
		select {
		case b := <-w.C:
			if len(b.Events) != 0 {
				t.Fatalf("unexpected events %v", b.Events)
			}
			if b.Revision == 5 {
				return
			}
		case <-deadline:
			t.Fatal("no progress notification up to revision 5")
		}
	}
}

func TestBatchAppliesEachTxnOnItsOwn(t *testing.T) {
	l := newFeeder(t)
	mustOK(t, l.put("/a", "1")) // revision 1
	putTxn := func(k, v string, ifRev int64) *storepb.TxnRequest {
		return &storepb.TxnRequest{
			Compare: []*storepb.Compare{{Key: []byte(k), Target: storepb.Compare_MOD_REVISION, Result: storepb.Compare_EQUAL, Number: ifRev}},
			Success: []*storepb.RequestOp{{Op: &storepb.RequestOp_Put{Put: &storepb.PutRequest{Key: []byte(k), Value: []byte(v)}}}},
		}
	}
	res := l.cmd(storepb.Command_BATCH, &storepb.BatchRequest{Txns: []*storepb.TxnRequest{
		putTxn("/a", "2", 1),                // holds: revision 2
		putTxn("/a", "x", 1),                // stale now: not applied
		{Success: []*storepb.RequestOp{{}}}, // malformed: INVALID, the rest go on
		putTxn("/b", "1", 0),                // must not exist: revision 3
	}})
	mustOK(t, res)
	got := res.GetBatch().GetResults()
	if len(got) != 4 {
		t.Fatalf("want 4 results, got %v", res)
	}
	if !got[0].GetTxn().GetSucceeded() || got[0].GetTxn().GetRevision() != 2 {
		t.Errorf("first txn: want succeeded at revision 2, got %v", got[0])
	}
	if got[1].GetTxn().GetSucceeded() {
		t.Errorf("second txn compared against a stale revision but succeeded: %v", got[1])
	}
	if got[2].GetCode() != storepb.CommandResult_INVALID {
		t.Errorf("malformed txn: want INVALID, got %v", got[2])
	}
	if !got[3].GetTxn().GetSucceeded() || got[3].GetTxn().GetRevision() != 3 {
		t.Errorf("fourth txn: want succeeded at revision 3, got %v", got[3])
	}
	if v := string(l.f.get([]byte("/a")).GetValue()); v != "2" {
		t.Errorf("/a = %q, want 2", v)
	}
	if l.f.currentRevision() != 3 {
		t.Errorf("revision %d, want 3", l.f.currentRevision())
	}
}
