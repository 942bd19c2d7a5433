package consensus

import (
	"context"
	"sync"
)

// indexNotifier lets readers wait until the FSM has applied a log index.
type indexNotifier struct {
	mu    sync.Mutex
	index uint64
	ch    chan struct{} // closed and replaced whenever index advances
}

func newIndexNotifier() *indexNotifier { return &indexNotifier{ch: make(chan struct{})} }

func (n *indexNotifier) advance(idx uint64) {
	n.mu.Lock()
	if idx > n.index {
		n.index = idx
		close(n.ch)
		n.ch = make(chan struct{})
	}
	n.mu.Unlock()
}

// set forces the index (snapshot restore may move it backwards).
func (n *indexNotifier) set(idx uint64) {
	n.mu.Lock()
	n.index = idx
	close(n.ch)
	n.ch = make(chan struct{})
	n.mu.Unlock()
}

func (n *indexNotifier) get() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.index
}

// wait blocks until the index is at least idx or ctx ends.
func (n *indexNotifier) wait(ctx context.Context, idx uint64) error {
	for {
		n.mu.Lock()
		cur, ch := n.index, n.ch
		n.mu.Unlock()
		if cur >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
