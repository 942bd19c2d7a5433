package consensus

import (
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"

	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

func mustRange(t *testing.T, f *fsm, req *storepb.RangeRequest) *storepb.RangeResponse {
	t.Helper()
	resp, err := f.rangeRead(req)
	if err != nil {
		t.Fatalf("range %v: %v", req, err)
	}
	return resp
}

// TestFSMRangeAtPastRevision writes, rewrites and deletes keys at random and
// checks that a paged read at every past revision still held returns exactly
// the keys and values of that revision, whatever happened after it.
func TestFSMRangeAtPastRevision(t *testing.T) {
	l := newFeeder(t)
	rng := rand.New(rand.NewSource(7))
	model := map[string]string{}
	snapshots := map[int64]map[string]string{}
	var rev int64
	for i := 0; i < 400; i++ {
		k := fmt.Sprintf("/p/%02d", rng.Intn(40))
		if _, ok := model[k]; ok && rng.Intn(3) == 0 {
			rev = l.del(k).Revision
			delete(model, k)
		} else {
			v := fmt.Sprintf("v%d", i)
			rev = l.put(k, v).Revision
			model[k] = v
		}
		if rng.Intn(4) == 0 {
			mustOK(t, l.put(fmt.Sprintf("/q/%d", i), "other prefix"))
			rev++
		}
		snap := make(map[string]string, len(model))
		for k, v := range model {
			snap[k] = v
		}
		snapshots[rev] = snap
	}
	for at, want := range snapshots {
		for _, limit := range []int64{0, 1, 3, 7} {
			got := map[string]string{}
			var keys []string
			var after []byte
			for pages := 0; ; pages++ {
				if pages > 100 {
					t.Fatal("paging does not end")
				}
				resp := mustRange(t, l.f, &storepb.RangeRequest{Key: []byte("/p/"), Prefix: true, Limit: limit, ContinueAfter: after, Revision: at})
				if resp.Revision != at {
					t.Fatalf("read at %d reports revision %d", at, resp.Revision)
				}
				for _, kv := range resp.Kvs {
					got[string(kv.Key)] = string(kv.Value)
					keys = append(keys, string(kv.Key))
					if kv.ModRevision > at {
						t.Fatalf("read at %d returned %s modified at %d", at, kv.Key, kv.ModRevision)
					}
				}
				if !resp.More {
					break
				}
				after = resp.NextKey
			}
			if !sort.StringsAreSorted(keys) || len(keys) != len(got) {
				t.Fatalf("read at %d limit %d: keys out of order or repeated: %v", at, limit, keys)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("read at %d limit %d:\n got %v\nwant %v", at, limit, got, want)
			}
			n := mustRange(t, l.f, &storepb.RangeRequest{Key: []byte("/p/"), Prefix: true, CountOnly: true, Revision: at}).Count
			if n != int64(len(want)) {
				t.Fatalf("count at %d: %d, want %d", at, n, len(want))
			}
		}
		for k, v := range want {
			kvs := mustRange(t, l.f, &storepb.RangeRequest{Key: []byte(k), Revision: at}).Kvs
			if len(kvs) != 1 || string(kvs[0].Value) != v {
				t.Fatalf("get %s at %d: %v, want %s", k, at, kvs, v)
			}
		}
	}
}

// TestFSMRangeAtCompactedRevision: once the history no longer reaches back
// to a revision, a read at it fails with ErrCompacted, whose message tells
// the caller to re-list.
func TestFSMRangeAtCompactedRevision(t *testing.T) {
	l := &logFeeder{t: t, f: newFSM(5)}
	first := l.put("/p/a", "1").Revision
	for i := 0; i < 10; i++ {
		mustOK(t, l.put(fmt.Sprintf("/p/%d", i), "x"))
	}
	_, err := l.f.rangeRead(&storepb.RangeRequest{Key: []byte("/p/"), Prefix: true, Revision: first})
	if !errors.Is(err, ErrCompacted) || !strings.Contains(err.Error(), "re-list") {
		t.Fatalf("read at compacted revision %d: %v, want ErrCompacted saying re-list", first, err)
	}
	// The latest five revisions are still readable.
	cur := l.f.currentRevision()
	if _, err := l.f.rangeRead(&storepb.RangeRequest{Key: []byte("/p/"), Prefix: true, Revision: cur - 5}); err != nil {
		t.Fatalf("read at %d, within the history: %v", cur-5, err)
	}
}
