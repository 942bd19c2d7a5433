package consensus

import (
	"fmt"
	"testing"

	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// benchFSM holds 10,000 keys under one prefix, then 2,000 rewrites of them
// (the history a List page at the first revision must undo).
func benchFSM(b *testing.B) (*fsm, int64) {
	l := &logFeeder{t: b, f: newFSM(100_000)}
	for i := 0; i < 10_000; i++ {
		l.put(fmt.Sprintf("/registry/configmaps/default/cm-%05d", i), "value")
	}
	first := l.f.currentRevision()
	for i := 0; i < 2_000; i++ {
		l.put(fmt.Sprintf("/registry/configmaps/default/cm-%05d", (i*37)%10_000), "rewritten")
	}
	return l.f, first
}

func benchRange(b *testing.B, rev int64) {
	f, first := benchFSM(b)
	if rev < 0 {
		rev = first
	}
	req := &storepb.RangeRequest{Key: []byte("/registry/configmaps/default/"), Prefix: true, Limit: 500,
		ContinueAfter: []byte("/registry/configmaps/default/cm-05000"), Revision: rev}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if resp, err := f.rangeRead(req); err != nil || len(resp.Kvs) != 500 {
			b.Fatal(err)
		}
	}
}

// A page of 500 of the latest state (the first page of a List).
func BenchmarkFSMRangePageLatest(b *testing.B) { benchRange(b, 0) }

// The same page at a revision 2,000 writes back (a later page of a List).
func BenchmarkFSMRangePagePast(b *testing.B) { benchRange(b, -1) }
