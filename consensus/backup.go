package consensus

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// SaveSnapshot writes a consistent backup of the whole key space to w: the
// state as of a linearizable point, in the snapshot format. It returns the
// revision saved. The copy streams from a copy-on-write clone, so writes
// continue meanwhile.
func (s *Store) SaveSnapshot(ctx context.Context, w io.Writer) (int64, error) {
	if err := s.Linearize(ctx); err != nil {
		return 0, err
	}
	s.fsm.mu.Lock()
	tree, rev := s.fsm.tree.Clone(), s.fsm.revision
	s.fsm.mu.Unlock()
	// A backup's applied index means nothing to the cluster it is restored
	// into; RestoreSnapshot ignores it, so write 0.
	if err := writeSnapshot(w, tree, rev, 0); err != nil {
		return 0, fmt.Errorf("save snapshot at revision %d: %w", rev, err)
	}
	return rev, nil
}

// RestoreSnapshot replaces the cluster's whole state with a backup written
// by SaveSnapshot (size bytes from r). It must run on the leader; every
// member installs the restored state. Meant for disaster recovery into a
// fresh cluster: everything written before is gone.
func (s *Store) RestoreSnapshot(ctx context.Context, r io.Reader, size int64) (int64, error) {
	if !s.IsLeader() {
		return 0, ErrNotLeader
	}
	br := bufio.NewReader(r)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapshotMagic {
		return 0, fmt.Errorf("%w: not a skiff snapshot (bad magic)", ErrInvalid)
	}
	hdrLen, err := binary.ReadUvarint(br)
	if err != nil || hdrLen > 1<<16 {
		return 0, fmt.Errorf("%w: snapshot header length unreadable", ErrInvalid)
	}
	hdrBytes := make([]byte, hdrLen)
	if _, err := io.ReadFull(br, hdrBytes); err != nil {
		return 0, fmt.Errorf("%w: snapshot header truncated", ErrInvalid)
	}
	hdr := &storepb.SnapshotHeader{}
	if err := proto.Unmarshal(hdrBytes, hdr); err != nil || hdr.Version != SnapshotVersion {
		return 0, fmt.Errorf("%w: snapshot header unreadable or version %d unsupported", ErrInvalid, hdr.GetVersion())
	}
	consumed := int64(len(magic)) + int64(uvarintLen(hdrLen)) + int64(hdrLen)
	if size < consumed {
		return 0, fmt.Errorf("%w: snapshot of %d bytes is shorter than its header", ErrInvalid, size)
	}
	hdr.AppliedIndex = 0 // indexes of the old cluster mean nothing here
	var newHdr bytes.Buffer
	newHdr.WriteString(snapshotMagic)
	if _, err := protodelim.MarshalTo(&newHdr, hdr); err != nil {
		return 0, err
	}
	body := io.MultiReader(&newHdr, br)
	timeout := s.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(timeout, timeUntil(dl))
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: int64(newHdr.Len()) + size - consumed}
	if err := s.raft.Restore(meta, body, timeout); err != nil {
		return 0, fmt.Errorf("restore snapshot: %w", mapRaftErr(err))
	}
	// Raft's own restore barrier is a log noop the FSM never sees; commit a
	// NOOP command so every member's applied index moves past the restore
	// and linearizable reads do not wait for the next write.
	noop, _ := encodeCommand(storepb.Command_NOOP, nil)
	if _, _, err := s.applyLocal(ctx, noop); err != nil {
		return 0, fmt.Errorf("after restore: %w", err)
	}
	return hdr.Revision, nil
}

func uvarintLen(x uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], x)
}

func timeUntil(t time.Time) time.Duration { return time.Until(t) }
