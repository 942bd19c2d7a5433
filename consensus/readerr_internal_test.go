package consensus

import (
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestReadLosingLeadershipIsRetryable: whatever ends a leader's read check
// (leadership lost while committing, not the leader any more, no answer in
// time) answers Unavailable, which clients retry; only shutdown differs.
func TestReadLosingLeadershipIsRetryable(t *testing.T) {
	for _, cause := range []error{raft.ErrLeadershipLost, raft.ErrNotLeader, fmt.Errorf("%w: raft did not answer", ErrIndeterminate)} {
		err := readIndexError(cause)
		if !errors.Is(err, ErrLeadershipLost) || errors.Is(err, ErrNotLeader) {
			t.Errorf("%v: classified %v, want ErrLeadershipLost", cause, err)
		}
		if code := status.Code(ToStatus(err)); code != codes.Unavailable {
			t.Errorf("%v: code %s, want Unavailable", cause, code)
		}
	}
	if err := readIndexError(raft.ErrRaftShutdown); !errors.Is(err, ErrStopped) {
		t.Errorf("shutdown: %v, want ErrStopped", err)
	}
	// Across the wire the follower sees Unavailable too.
	if err := FromStatus(ToStatus(readIndexError(raft.ErrLeadershipLost))); !errors.Is(err, ErrNoLeader) {
		t.Errorf("remote: %v, want ErrNoLeader", err)
	}
}
