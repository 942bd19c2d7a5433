package consensus

import (
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// awaitTimeoutFloor bounds waits on futures whose call takes no timeout.
const awaitTimeoutFloor = 10 * time.Second

// await waits for a raft future, but never past the store's shutdown or
// timeout. hashicorp/raft answers most futures on shutdown, not all: a
// VerifyLeader or Apply enqueued just as the leader loop exits is never
// answered, and waiting on it would hang Close forever (seen under load).
// The goroutine left behind in that case ends with the process.
func (s *Store) await(f raft.Future, timeout time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	if timeout < awaitTimeoutFloor {
		timeout = awaitTimeoutFloor
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-s.stop:
		select { // an answer that raced the stop still wins
		case err := <-done:
			return err
		default:
		}
		return raft.ErrRaftShutdown
	case <-t.C:
		return fmt.Errorf("%w: raft did not answer within %s", ErrIndeterminate, timeout)
	}
}
