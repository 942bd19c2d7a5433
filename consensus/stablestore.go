package consensus

import (
	"sync"

	"github.com/hashicorp/raft"
)

// closingStable is the stable store (current term, vote) as raft sees it,
// made safe to close under a live transport.
//
// Why: raft answers heartbeats on the transport's goroutine, outside its
// main loop. One that passed raft's shutdown check just before Shutdown
// can still persist a new term after Shutdown returned and the store has
// closed bbolt — and raft panics when a term cannot be saved ("failed to
// save current term: database not open", seen under the race detector).
// close waits for writes in flight; a write that comes after it parks its
// goroutine for good instead of returning an error: the node is going away,
// and never answering that heartbeat is safe where answering it with an
// unsaved term would not be.
type closingStable struct {
	inner  raft.StableStore
	mu     sync.RWMutex
	closed bool
	never  chan struct{} // never closed: where late writes wait
}

func newClosingStable(inner raft.StableStore) *closingStable {
	return &closingStable{inner: inner, never: make(chan struct{})}
}

// write runs f unless the store is closed, in which case it never returns.
func (c *closingStable) write(f func() error) error {
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		<-c.never
	}
	defer c.mu.RUnlock()
	return f()
}

func (c *closingStable) Set(key, val []byte) error {
	return c.write(func() error { return c.inner.Set(key, val) })
}

func (c *closingStable) SetUint64(key []byte, val uint64) error {
	return c.write(func() error { return c.inner.SetUint64(key, val) })
}

func (c *closingStable) Get(key []byte) ([]byte, error) { return c.inner.Get(key) }

func (c *closingStable) GetUint64(key []byte) (uint64, error) { return c.inner.GetUint64(key) }

// close lets the writes in flight finish and parks every later one; call
// it before closing the store underneath.
func (c *closingStable) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
}
