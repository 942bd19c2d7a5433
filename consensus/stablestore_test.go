package consensus

import (
	"sync"
	"testing"

	"github.com/hashicorp/raft"
)

// blockingStable records writes; a write of the value 7 waits for release.
type blockingStable struct {
	raft.StableStore
	mu      sync.Mutex
	writes  []uint64
	entered chan struct{}
	release chan struct{}
}

func (b *blockingStable) SetUint64(_ []byte, v uint64) error {
	if v == 7 {
		close(b.entered)
		<-b.release
	}
	b.mu.Lock()
	b.writes = append(b.writes, v)
	b.mu.Unlock()
	return nil
}

// TestClosingStableWaitsForWritesInFlight: close returns only after a term
// write that had started is saved, so the store beneath is never closed
// under it (raft panics on a failed term save).
func TestClosingStableWaitsForWritesInFlight(t *testing.T) {
	inner := &blockingStable{entered: make(chan struct{}), release: make(chan struct{})}
	c := newClosingStable(inner)
	if err := c.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.SetUint64([]byte("CurrentTerm"), 7) }()
	<-inner.entered
	// close takes the write lock: while the write is in flight it cannot.
	if c.mu.TryLock() {
		t.Fatal("close could proceed while a term write was in flight")
	}
	close(inner.release)
	c.close()
	inner.mu.Lock()
	defer inner.mu.Unlock()
	if len(inner.writes) != 2 || inner.writes[1] != 7 {
		t.Fatalf("writes %v: the in-flight write must land before close returns", inner.writes)
	}
	if !c.closed {
		t.Fatal("not marked closed")
	}
}
