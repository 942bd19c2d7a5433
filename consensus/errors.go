package consensus

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers test with errors.Is; the gRPC boundary maps them
// to status codes (see status.go).
var (
	// ErrNotLeader: the operation needs the leader and this node is not it.
	ErrNotLeader = errors.New("not the raft leader")
	// ErrNoLeader: no leader is known (election under way or quorum lost).
	ErrNoLeader = errors.New("no raft leader: election in progress or quorum lost")
	// ErrLeadershipLost: this node stopped leading while serving a read (or
	// another call that changed nothing); the new leader can serve a retry.
	ErrLeadershipLost = errors.New("leadership lost during the call, retry on the new leader")
	// ErrNoQuorum: this node has no leader and reaches too few voters for
	// one to be elected; the message names the way out (ctl recover).
	ErrNoQuorum = errors.New("quorum lost")
	// ErrConflict: a conditional write's revision precondition failed.
	ErrConflict = errors.New("revision conflict")
	// ErrKeyNotFound: a delete named a key that does not exist.
	ErrKeyNotFound = errors.New("key not found")
	// ErrCompacted: a watch asked for a revision older than the history kept.
	ErrCompacted = errors.New("revision compacted: re-list and watch from the new revision")
	// ErrWatcherTooSlow: a watcher fell so far behind that the history it
	// still needed was dropped; it must re-list.
	ErrWatcherTooSlow = errors.New("watcher too slow: events it needed were dropped, re-list")
	// ErrInvalid: the request or command is malformed.
	ErrInvalid = errors.New("invalid request")
	// ErrStopped: the store is shut down.
	ErrStopped = errors.New("store stopped")
)

// ConflictError says which key failed its precondition and what it holds now.
type ConflictError struct {
	Key             string
	Expected        int64
	CurrentRevision int64 // the key's mod_revision now; 0 if it does not exist
}

func (e *ConflictError) Error() string {
	if e.Expected == 0 {
		return fmt.Sprintf("revision conflict on %q: key exists (mod_revision %d), expected it absent", e.Key, e.CurrentRevision)
	}
	if e.CurrentRevision == 0 {
		return fmt.Sprintf("revision conflict on %q: key does not exist, expected mod_revision %d", e.Key, e.Expected)
	}
	return fmt.Sprintf("revision conflict on %q: mod_revision is %d, expected %d", e.Key, e.CurrentRevision, e.Expected)
}

func (e *ConflictError) Unwrap() error { return ErrConflict }

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
