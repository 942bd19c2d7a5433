package consensus

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// quorumProbeCache is how long one probe of the voters answers for: callers
// that arrive together share it.
const quorumProbeCache = 200 * time.Millisecond

// quorumCheck tells a node without a leader whether an election can still
// succeed. With no leader known, the node asks every voter of its
// configuration for its status (each within half the election timeout);
// when fewer than a quorum answer (itself included), it knows no leader
// can be elected and says so at once, rather than letting writes and reads
// wait for their deadline.
type quorumCheck struct {
	mu      sync.Mutex
	checked time.Time
	err     error
}

// noQuorum returns ErrNoQuorum when this node has no leader and cannot reach
// a quorum of voters, nil otherwise (a leader is known, or an election can
// still succeed).
func (s *Store) noQuorum(ctx context.Context) error {
	if _, addr := s.Leader(); addr != "" {
		return nil
	}
	q := &s.quorum
	q.mu.Lock()
	defer q.mu.Unlock()
	if time.Since(q.checked) < quorumProbeCache {
		return q.err
	}
	q.err = s.probeVoters(ctx)
	q.checked = time.Now()
	return q.err
}

func (s *Store) probeVoters(ctx context.Context) error {
	f := s.raft.GetConfiguration()
	if err := s.await(f, s.cfg.ElectionTimeout); err != nil {
		return nil // no configuration to judge by: leave it to the caller's wait
	}
	var voters []raft.Server
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			voters = append(voters, srv)
		}
	}
	if len(voters) == 0 {
		return nil
	}
	timeout := s.cfg.ElectionTimeout / 2
	var mu sync.Mutex
	reached := 0
	var wg sync.WaitGroup
	for _, srv := range voters {
		if string(srv.ID) == s.cfg.ID {
			mu.Lock() // the probes of voters before it may be counting already
			reached++
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			c, err := s.peers.readyInternal(pctx, string(srv.Address))
			if err != nil {
				return
			}
			if _, err := c.Status(pctx, &storepb.StatusRequest{}); err != nil {
				return
			}
			mu.Lock()
			reached++
			mu.Unlock()
		}()
	}
	wg.Wait()
	need := len(voters)/2 + 1
	if reached >= need {
		return nil
	}
	return fmt.Errorf("%w: this node (%s) reaches %d of %d voters and needs %d to elect a leader. "+
		"Bring the other control nodes back; if they are lost for good, stop this node and run "+
		"`ctl recover --data-dir DIR` on it to make it a one-node cluster", ErrNoQuorum, s.cfg.ID, reached, len(voters), need)
}
