package consensus

import (
	"bufio"
	"fmt"
	"io"

	"github.com/google/btree"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// snapshotMagic opens every snapshot stream; SnapshotVersion follows in the
// header so a later format can be told apart.
const (
	snapshotMagic   = "SKIFFSNP"
	SnapshotVersion = 1
)

// fsmSnapshot is a point-in-time view of the FSM. The btree clone is lazy
// copy-on-write, so taking it is O(1) and Persist streams records straight
// from the shared, immutable nodes: the state is never copied whole.
type fsmSnapshot struct {
	tree    *btree.BTreeG[*storepb.KeyValue]
	rev     int64
	applied uint64
}

// Snapshot implements raft.FSM. Raft calls it on the FSM goroutine, between
// applies; the write lock is held only for the O(1) clone.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &fsmSnapshot{tree: f.tree.Clone(), rev: f.revision, applied: f.applied.get()}, nil
}

// Persist writes the snapshot: magic, a length-delimited header, then every
// record length-delimited in key order — deterministic bytes for one state.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(sink, s.tree, s.rev, s.applied); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot at revision %d: %w", s.rev, err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

func writeSnapshot(w io.Writer, tree *btree.BTreeG[*storepb.KeyValue], rev int64, applied uint64) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	if _, err := bw.WriteString(snapshotMagic); err != nil {
		return err
	}
	opts := protodelim.MarshalOptions{MarshalOptions: proto.MarshalOptions{Deterministic: true}}
	hdr := &storepb.SnapshotHeader{Version: SnapshotVersion, Revision: rev, Count: int64(tree.Len()), AppliedIndex: applied}
	if _, err := opts.MarshalTo(bw, hdr); err != nil {
		return err
	}
	var err error
	tree.Ascend(func(kv *storepb.KeyValue) bool {
		_, err = opts.MarshalTo(bw, kv)
		return err == nil
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}

// Restore implements raft.FSM: it replaces the whole state with the stream.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	tree, hdr, err := readSnapshot(rc)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	idx := indexTree(tree)
	f.mu.Lock()
	f.tree, f.byKey = tree, idx
	f.revision = hdr.Revision
	f.hub.reset(hdr.Revision) // under f.mu, as ApplyBatch's append
	f.mu.Unlock()
	f.applied.set(hdr.AppliedIndex)
	return nil
}

func readSnapshot(r io.Reader) (*btree.BTreeG[*storepb.KeyValue], *storepb.SnapshotHeader, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapshotMagic {
		return nil, nil, fmt.Errorf("%w: not a skiff snapshot (bad magic)", ErrInvalid)
	}
	opts := protodelim.UnmarshalOptions{MaxSize: MaxKeyBytes + MaxValueBytes + 1024}
	hdr := &storepb.SnapshotHeader{}
	if err := opts.UnmarshalFrom(br, hdr); err != nil {
		return nil, nil, fmt.Errorf("%w: snapshot header: %v", ErrInvalid, err)
	}
	if hdr.Version != SnapshotVersion {
		return nil, nil, fmt.Errorf("%w: snapshot version %d, this build reads %d", ErrInvalid, hdr.Version, SnapshotVersion)
	}
	tree := btree.NewG(32, kvLess)
	for i := int64(0); i < hdr.Count; i++ {
		kv := &storepb.KeyValue{}
		if err := opts.UnmarshalFrom(br, kv); err != nil {
			return nil, nil, fmt.Errorf("%w: snapshot record %d of %d: %v", ErrInvalid, i+1, hdr.Count, err)
		}
		tree.ReplaceOrInsert(kv)
	}
	return tree, hdr, nil
}
