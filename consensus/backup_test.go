package consensus_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/skiffhq/skiff/consensus/consensustest"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

func TestSnapshotSaveAndRestoreIntoFreshCluster(t *testing.T) {
	src := consensustest.Start(t, 3, nil)
	l := src.MustLeader(t)
	for i := 0; i < 100; i++ {
		put(t, l.Store(), fmt.Sprintf("/b/%03d", i), fmt.Sprint(i))
	}
	// Save on a follower while the cluster is live.
	var buf bytes.Buffer
	rev, err := followers(src, l)[0].Store().SaveSnapshot(ctxT(t), &buf)
	if err != nil {
		t.Fatal(err)
	}
	put(t, l.Store(), "/b/late", "not in the backup")
	want, err := l.Store().Range(ctxT(t), &storepb.RangeRequest{Key: []byte("/b/"), Prefix: true})
	if err != nil {
		t.Fatal(err)
	}

	dst := consensustest.Start(t, 3, nil)
	dl := dst.MustLeader(t)
	put(t, dl.Store(), "/b/old", "replaced by the restore")
	gotRev, err := dl.Store().RestoreSnapshot(ctxT(t), bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if gotRev != rev {
		t.Fatalf("restored revision %d, saved %d", gotRev, rev)
	}
	for _, n := range dst.Running() {
		resp, err := n.Store().Range(ctxT(t), &storepb.RangeRequest{Key: []byte("/b/"), Prefix: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 100 {
			t.Fatalf("%s: %d keys after restore, want the 100 saved", n.ID, len(resp.Kvs))
		}
		for i, kv := range resp.Kvs {
			w := want.Kvs[i]
			if string(kv.Key) != string(w.Key) || string(kv.Value) != string(w.Value) || kv.ModRevision != w.ModRevision || kv.CreateRevision != w.CreateRevision || kv.Version != w.Version {
				t.Fatalf("%s: record %d differs: %v vs %v", n.ID, i, kv, w)
			}
		}
	}
	// The restored cluster keeps working, with revisions after the backup's.
	resp := put(t, dl.Store(), "/b/new", "x")
	if resp.Revision <= rev {
		t.Fatalf("revision after restore %d, want > %d", resp.Revision, rev)
	}
	if _, err := dl.Store().RestoreSnapshot(ctxT(t), bytes.NewReader([]byte("garbage!")), 8); err == nil {
		t.Fatal("garbage restored")
	}
}
