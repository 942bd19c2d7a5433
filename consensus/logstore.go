package consensus

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"go.etcd.io/bbolt"
)

// Log stores: where Raft keeps its log and its stable state (term, vote).
const (
	// LogStoreBoltDB is raft-boltdb: one bbolt file, raft.db. Each append
	// is a bbolt commit (two fdatasyncs). The default.
	LogStoreBoltDB = "boltdb"
	// LogStoreWAL is hashicorp/raft-wal: append-only segment files under
	// wal/, one fdatasync per append.
	LogStoreWAL = "wal"
)

// logStoreFile records in the data dir which log store wrote it.
const logStoreFile = "log-store"

// ErrLogStoreMismatch: the data dir was written by the other log store.
var ErrLogStoreMismatch = errors.New("data dir was written by another raft log store")

// raftLogStore is what raft needs of a log store; both kinds are also its
// stable store.
type raftLogStore interface {
	raft.LogStore
	raft.StableStore
	io.Closer
}

// ParseLogStore checks a --raft-log-store value ("" is the default).
func ParseLogStore(v string) (string, error) {
	switch v {
	case "":
		return LogStoreBoltDB, nil
	case LogStoreBoltDB, LogStoreWAL:
		return v, nil
	}
	return "", fmt.Errorf("%w: raft log store %q: want %q or %q", ErrInvalid, v, LogStoreBoltDB, LogStoreWAL)
}

// resolveLogStore decides which log store a data dir uses and records it:
// the one recorded there; for a data dir from before the record, the one
// whose files are there; for a new one, want (default boltdb). A want that
// differs from what the data dir holds is refused, naming the way over.
func resolveLogStore(dir, want string) (string, error) {
	if want != "" {
		if _, err := ParseLogStore(want); err != nil {
			return "", err
		}
	}
	have, err := recordedLogStore(dir)
	if err != nil {
		return "", err
	}
	switch {
	case have != "" && want != "" && have != want:
		return "", fmt.Errorf("%w: %s holds a %s log, this node was asked for %s. Start it with --raft-log-store %s, "+
			"or migrate: remove the node from the cluster (ctl members remove), move its data dir away and join it again with --raft-log-store %s (it copies the state from the leader)",
			ErrLogStoreMismatch, dir, have, want, have, want)
	case have != "":
		return have, nil
	}
	chosen, _ := ParseLogStore(want)
	if err := os.WriteFile(filepath.Join(dir, logStoreFile), []byte(chosen+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("record log store in %s: %w", dir, err)
	}
	return chosen, nil
}

// recordedLogStore is the log store a data dir was written by, "" for a new one.
func recordedLogStore(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, logStoreFile))
	switch {
	case err == nil:
		v := strings.TrimSpace(string(b))
		if _, perr := ParseLogStore(v); perr != nil || v == "" {
			return "", fmt.Errorf("%w: %s: unknown log store %q", ErrInvalid, filepath.Join(dir, logStoreFile), v)
		}
		return v, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("read %s: %w", filepath.Join(dir, logStoreFile), err)
	}
	// Written before the record existed (only boltdb was then), or new.
	if _, err := os.Stat(filepath.Join(dir, "raft.db")); err == nil {
		return LogStoreBoltDB, nil
	}
	if _, err := os.Stat(filepath.Join(dir, "wal")); err == nil {
		return LogStoreWAL, nil
	}
	return "", nil
}

// openRaftStorage opens the data dir's log store and snapshot store.
func openRaftStorage(cfg Config, log *slog.Logger) (raftLogStore, raft.SnapshotStore, error) {
	kind, err := resolveLogStore(cfg.DataDir, cfg.LogStore)
	if err != nil {
		return nil, nil, err
	}
	var ls raftLogStore
	switch kind {
	case LogStoreWAL:
		ls, err = openWAL(cfg.DataDir, log)
	default:
		ls, err = openBolt(cfg.DataDir)
	}
	if err != nil {
		return nil, nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, newHCLogger("raft-snap", log))
	if err != nil {
		_ = ls.Close()
		return nil, nil, fmt.Errorf("open snapshot store: %w", err)
	}
	return ls, snaps, nil
}

func openBolt(dir string) (raftLogStore, error) {
	// raft-boltdb syncs every batch of log writes (NoSync false): an
	// acknowledged write survives power loss on a quorum.
	bs, err := raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(dir, "raft.db"),
		BoltOptions: &bbolt.Options{
			// A second process on the same data dir fails fast instead of
			// waiting forever for bbolt's file lock.
			Timeout: time.Second,
			// Every log write is a bbolt commit; not writing the freelist
			// page makes each commit (and its fdatasyncs) smaller. bbolt
			// rebuilds the freelist on open instead.
			NoFreelistSync: true,
			FreelistType:   bbolt.FreelistMapType,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("open raft log %s: %w", filepath.Join(dir, "raft.db"), err)
	}
	return bs, nil
}

// walStore is raft-wal with a lock on its directory (raft-wal's meta
// database would wait for ever for a second process's lock) and its meta
// database, which WAL.Close leaves open (a reopen in the same process then
// waited for ever on bbolt's lock).
type walStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
	lock *os.File
}

func (w *walStore) Close() error {
	err := errors.Join(w.WAL.Close(), w.meta.Close())
	_ = w.lock.Close() // releases the flock
	return err
}

func openWAL(dir string, log *slog.Logger) (raftLogStore, error) {
	wdir := filepath.Join(dir, "wal")
	if err := os.MkdirAll(wdir, 0o700); err != nil {
		return nil, fmt.Errorf("raft log dir: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(wdir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("raft log lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("open raft log %s: in use by another process (%w)", wdir, err)
	}
	// raft-wal fsyncs every append before it returns (no option to skip).
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(wdir, wal.WithLogger(newHCLogger("raft-wal", log)), wal.WithMetaStore(meta))
	if err != nil {
		_ = meta.Close()
		_ = lock.Close()
		return nil, fmt.Errorf("open raft log %s: %w", wdir, err)
	}
	return &walStore{WAL: w, meta: meta, lock: lock}, nil
}
