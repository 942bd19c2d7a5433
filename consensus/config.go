package consensus

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures one control node's store.
type Config struct {
	// ID names this node in the Raft configuration; it must be unique and
	// stable across restarts.
	ID string
	// DataDir holds the Raft log and stable store (raft.db, or wal/),
	// snapshots/ and log-store, the record of which log store wrote it.
	DataDir string
	// LogStore is the Raft log store of a new data dir: LogStoreBoltDB
	// (also when empty) or LogStoreWAL. An existing data dir keeps its
	// own; naming the other one is refused (ErrLogStoreMismatch).
	LogStore string
	// BindAddr is where the consensus port listens ("127.0.0.1:0" picks a port).
	BindAddr string
	// AdvertiseAddr is the address peers dial; empty means the bound address.
	AdvertiseAddr string
	// ServerTLS and ClientTLS secure every connection between control nodes.
	// Both must verify the peer (mutual TLS).
	ServerTLS *tls.Config
	ClientTLS *tls.Config
	// PeerIdentity names the control member a peer's certificate speaks
	// for (the certificate's chain is already verified), or refuses it. The
	// store then serves the peer only while that id is in its Raft
	// configuration, on both sides of every connection: inbound peers
	// (Raft, KV, internal gRPC) and the servers it dials. Required: the
	// store has no other notion of who may read and write it. The control
	// plane maps "control:<id>" certificates and refuses revoked ones.
	PeerIdentity func(cert *x509.Certificate) (memberID string, err error)
	// JoinMembers are the member ids this node accepts as peers while it
	// has no Raft configuration yet (a node just added by the leader,
	// before the leader's first AppendEntries): the members listed by the
	// join that added it. Ignored once a configuration exists.
	JoinMembers []string
	// Bootstrap makes a brand-new node form a one-voter cluster. It is
	// ignored when DataDir already holds Raft state.
	Bootstrap bool

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	// CommitTimeout is how soon an idle leader tells followers the commit
	// index; it bounds how long a follower's read-your-write waits.
	CommitTimeout time.Duration
	// MaxRPCsInFlight is how many AppendEntries requests the leader keeps
	// in flight to each follower (pipelined replication); 1 turns
	// pipelining off, 0 means DefaultMaxRPCsInFlight.
	MaxRPCsInFlight int
	// MaxAppendEntries caps the entries in one AppendEntries request (and
	// one leader log write); 0 means DefaultMaxAppendEntries.
	MaxAppendEntries  int
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	// TrailingLogs is how many entries stay after a snapshot; a follower
	// further behind catches up by snapshot install.
	TrailingLogs uint64
	// WatchHistory is how many events are kept for watch resumes.
	WatchHistory int
	// WatchBuffer is each watcher's channel depth.
	WatchBuffer int
	// MaxVoters caps the voter count; the odd-quorum policy keeps it odd.
	MaxVoters int
	// ApplyTimeout bounds a write when the caller's context has no deadline.
	ApplyTimeout time.Duration
	// HealthyContact: a member that has not heard from the leader for
	// longer is unhealthy (and not promoted to voter).
	HealthyContact time.Duration

	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Fault, when set, lets tests cut this node off the network.
	Fault *NetworkFault
}

// Replication defaults (Config.MaxRPCsInFlight, Config.MaxAppendEntries);
// BENCHMARKS.md has the measurements behind them.
const (
	DefaultMaxRPCsInFlight  = 2
	DefaultMaxAppendEntries = 256
)

func (c Config) maxRPCsInFlight() int {
	if c.MaxRPCsInFlight == 0 {
		return DefaultMaxRPCsInFlight
	}
	return c.MaxRPCsInFlight
}

func (c Config) maxAppendEntries() int {
	if c.MaxAppendEntries == 0 {
		return DefaultMaxAppendEntries
	}
	return c.MaxAppendEntries
}

// DefaultConfig returns production defaults.
//
// Timeouts: a follower gives up on a silent leader after a random time
// between HeartbeatTimeout and twice that; the first to do so asks for a
// pre-vote, which a peer still following the dead leader refuses, so the
// election usually completes only once the second survivor has timed out
// too. With 1 s that was 2.0-2.9 s from kill -9 to the next acknowledged
// write (make bench-failover); with 500 ms it is about half (BENCHMARKS.md).
// The lease stays 500 ms: a 250 ms lease lost the leader when fsync
// stalled under load, while heartbeats (sent every tenth of the timeout,
// answered without touching the disk) keep a loaded leader in contact.
func DefaultConfig() Config {
	return Config{
		BindAddr:           "0.0.0.0:7444",
		HeartbeatTimeout:   500 * time.Millisecond,
		ElectionTimeout:    500 * time.Millisecond,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout:      10 * time.Millisecond,
		SnapshotThreshold:  8192,
		SnapshotInterval:   30 * time.Second,
		TrailingLogs:       10240,
		WatchHistory:       100_000,
		WatchBuffer:        64,
		MaxVoters:          5,
		ApplyTimeout:       10 * time.Second,
		HealthyContact:     5 * time.Second,
		Logger:             slog.Default(),
	}
}

func (c *Config) validate() error {
	switch {
	case c.ID == "":
		return fmt.Errorf("%w: config: ID is empty", ErrInvalid)
	case c.DataDir == "":
		return fmt.Errorf("%w: config: DataDir is empty", ErrInvalid)
	case c.BindAddr == "":
		return fmt.Errorf("%w: config: BindAddr is empty", ErrInvalid)
	case c.ServerTLS == nil || c.ClientTLS == nil:
		return fmt.Errorf("%w: config: ServerTLS and ClientTLS are required (control nodes speak mutual TLS only)", ErrInvalid)
	case c.ServerTLS.ClientAuth != tls.RequireAndVerifyClientCert:
		return fmt.Errorf("%w: config: ServerTLS must require and verify client certificates", ErrInvalid)
	case c.PeerIdentity == nil:
		return fmt.Errorf("%w: config: PeerIdentity is required (it says which certificates are control members)", ErrInvalid)
	case c.MaxRPCsInFlight < 0:
		return fmt.Errorf("%w: config: MaxRPCsInFlight %d is negative (1 turns pipelining off, 0 is the default)", ErrInvalid, c.MaxRPCsInFlight)
	case c.MaxAppendEntries < 0 || c.MaxAppendEntries > 1024:
		return fmt.Errorf("%w: config: MaxAppendEntries %d is outside 0-1024 (0 is the default; raft refuses more than 1024)", ErrInvalid, c.MaxAppendEntries)
	case c.MaxVoters < 1:
		return fmt.Errorf("%w: config: MaxVoters %d must be at least 1", ErrInvalid, c.MaxVoters)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}
