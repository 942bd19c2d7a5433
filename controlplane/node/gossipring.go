package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane/pki"
	adminv1 "github.com/skiffhq/skiff/proto/admin/v1"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// gossipKeyringKey holds the cluster's gossip key ring once an admin
// changed it (`ctl gossip key`); before that the ring is the single key at
// gossipKeyKey (clusters made before rotation existed keep working).
const gossipKeyringKey = "/skiff/gossip-keyring"

// GossipKeyringFile, in a worker's PKI dir, is the ring it last fetched
// (JSON, primary first), so that a restart uses the current ring.
const GossipKeyringFile = "gossip.keyring"

// How often control nodes re-read the stored ring (a local store read) and
// workers ask a control node for it (an RPC: at 500 workers, 100 calls/s).
const (
	controlRingInterval = time.Second
	workerRingInterval  = 5 * time.Second
)

// maxGossipKeys: one rotation at a time (see agent/gossip's InstallKey).
const maxGossipKeys = 2

// Gossip key ring operations (GossipKeyringRequest.Op).
const (
	keyringList    = "list"
	keyringInstall = "install"
	keyringUse     = "use"
	keyringRemove  = "remove"
)

// gossipRing is the stored ring: Keys[0] encrypts, every key decrypts.
type gossipRing struct {
	Keys [][]byte `json:"keys"`
}

func (r gossipRing) has(key []byte) bool {
	return slices.ContainsFunc(r.Keys, func(k []byte) bool { return bytes.Equal(k, key) })
}

// keyFingerprint is agent/gossip's KeyFingerprint (controlplane may not
// import agent/): hex of the first 8 bytes of the key's SHA-256.
func keyFingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

// readGossipRing reads the ring and the revision a write must expect (0:
// no ring stored yet; the ring is then the cluster's single key, created
// if the cluster has none).
func readGossipRing(ctx context.Context, s kv) (gossipRing, int64, error) {
	cur, _, err := s.Get(ctx, []byte(gossipKeyringKey))
	if err != nil {
		return gossipRing{}, 0, err
	}
	if cur == nil {
		key, err := gossipKey(ctx, s)
		if err != nil {
			return gossipRing{}, 0, err
		}
		return gossipRing{Keys: [][]byte{key}}, 0, nil
	}
	var r gossipRing
	if err := json.Unmarshal(cur.Value, &r); err != nil {
		return gossipRing{}, 0, fmt.Errorf("gossip key ring %s: %w", gossipKeyringKey, err)
	}
	if len(r.Keys) == 0 {
		return gossipRing{}, 0, fmt.Errorf("gossip key ring %s is empty", gossipKeyringKey)
	}
	return r, cur.ModRevision, nil
}

// primaryGossipKey is the key members encrypt with (handed out at join).
func primaryGossipKey(ctx context.Context, s kv) ([]byte, error) {
	r, _, err := readGossipRing(ctx, s)
	if err != nil {
		return nil, err
	}
	return r.Keys[0], nil
}

// GossipKeyring implements the admin RPC.
func (a *adminServer) GossipKeyring(ctx context.Context, req *adminv1.GossipKeyringRequest) (*adminv1.GossipKeyringResponse, error) {
	if err := requireAdmin(ctx, "read or change the gossip key ring"); err != nil {
		return nil, err
	}
	ring, rev, err := readGossipRing(ctx, a.store)
	if err != nil {
		return nil, storeStatus(err)
	}
	key := req.GetKey()
	op := req.GetOp()
	if op != keyringList {
		switch len(key) {
		case 16, 24, 32:
		default:
			return nil, status.Errorf(codes.InvalidArgument, "key: %d bytes, want 16, 24 or 32 (base64 of `head -c 32 /dev/urandom`)", len(key))
		}
	}
	var holders, primaries map[string]int
	var members int
	if a.members != nil {
		holders, primaries, members = a.members.KeyHolders()
	}
	fp := keyFingerprint(key)
	next := gossipRing{Keys: slices.Clone(ring.Keys)}
	switch op {
	case keyringList:
	case keyringInstall:
		if ring.has(key) {
			break
		}
		if len(ring.Keys) >= maxGossipKeys {
			return nil, status.Errorf(codes.FailedPrecondition, "a rotation is under way (%d keys installed): `ctl gossip key use` the new key and `ctl gossip key remove` the old one first", len(ring.Keys))
		}
		next.Keys = append(next.Keys, key)
	case keyringUse:
		i := slices.IndexFunc(ring.Keys, func(k []byte) bool { return bytes.Equal(k, key) })
		if i < 0 {
			return nil, status.Errorf(codes.FailedPrecondition, "key %s is not installed: `ctl gossip key install` it first", fp)
		}
		// A member that cannot decrypt the new key would be cut off:
		// every live member must hold it first (as Serf's install answers).
		if i > 0 && members > 0 && holders[fp] < members {
			return nil, status.Errorf(codes.FailedPrecondition, "key %s is held by %d of %d live members yet (workers fetch the ring every %s): wait until `ctl gossip key list` shows %d/%d, then use it",
				fp, holders[fp], members, workerRingInterval, members, members)
		}
		next.Keys = append([][]byte{key}, slices.Delete(slices.Clone(ring.Keys), i, i+1)...)
	case keyringRemove:
		if bytes.Equal(ring.Keys[0], key) {
			return nil, status.Errorf(codes.FailedPrecondition, "key %s is the primary key (members encrypt with it) and cannot be removed: `ctl gossip key use` another key first", fp)
		}
		if !ring.has(key) {
			return nil, status.Errorf(codes.NotFound, "key %s is not installed", fp)
		}
		if n := primaries[fp]; n > 0 {
			return nil, status.Errorf(codes.FailedPrecondition, "%d live member(s) still encrypt with key %s and would be cut off: wait until every member uses the primary key (`ctl gossip key list`), then remove", n, fp)
		}
		next.Keys = slices.DeleteFunc(next.Keys, func(k []byte) bool { return bytes.Equal(k, key) })
	default:
		return nil, status.Errorf(codes.InvalidArgument, "op: %q is not %q, %q, %q or %q", op, keyringList, keyringInstall, keyringUse, keyringRemove)
	}
	if !slices.EqualFunc(next.Keys, ring.Keys, bytes.Equal) {
		b, err := json.Marshal(next)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "%v", err)
		}
		if _, err := a.store.Put(ctx, &storepb.PutRequest{Key: []byte(gossipKeyringKey), Value: b, IfModRevision: &rev}); err != nil {
			if errors.Is(err, consensus.ErrConflict) {
				return nil, status.Error(codes.Aborted, "the gossip key ring changed meanwhile (another `ctl gossip key` call?): list it and retry")
			}
			return nil, storeStatus(err)
		}
		a.log.Warn("gossip key ring changed", "op", op, "key", fp, "keys", len(next.Keys))
		ring = next
		// Apply here at once (every control node's ring loop does too).
		if a.members != nil {
			if err := a.members.ApplyKeys(ring.Keys); err != nil && !errors.Is(err, errMemberNotRunning) {
				a.log.Warn("gossip key ring not applied to this node's member", "err", err)
			}
		}
	}
	out := &adminv1.GossipKeyringResponse{}
	if a.members != nil {
		holders, _, members = a.members.KeyHolders()
		out.Members = int32(members)
	}
	for i, k := range ring.Keys {
		f := keyFingerprint(k)
		out.Keys = append(out.Keys, &adminv1.GossipKeyInfo{Fingerprint: f, Primary: i == 0, Members: int32(holders[f])})
	}
	return out, nil
}

// keyApplier is the member a ring loop keeps in step.
type keyApplier interface{ ApplyKeys(keys [][]byte) error }

// followGossipRing applies the ring read by fetch to m every interval
// until ctx ends (a control node reads the store; a worker asks a control
// node). save, when set, keeps each new ring (a worker's data dir).
func followGossipRing(ctx context.Context, interval time.Duration, m keyApplier, fetch func(context.Context) ([][]byte, error), save func([][]byte) error, log *slog.Logger) error {
	var applied [][]byte
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		keys, err := fetch(ctx)
		switch {
		case err != nil:
			log.Debug("gossip key ring", "err", err)
		case slices.EqualFunc(keys, applied, bytes.Equal):
		default:
			if err := m.ApplyKeys(keys); err != nil {
				if !errors.Is(err, errMemberNotRunning) {
					log.Warn("gossip key ring not applied", "err", err)
				}
				break
			}
			if save != nil {
				if err := save(keys); err != nil {
					log.Warn("gossip key ring not saved", "err", err)
				}
			}
			applied = keys
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// saveWorkerRing keeps the ring in the worker's PKI dir.
func saveWorkerRing(dataDir string) func([][]byte) error {
	return func(keys [][]byte) error {
		b, err := json.Marshal(gossipRing{Keys: keys})
		if err != nil {
			return err
		}
		return pki.WriteFileAtomic(filepath.Join(dataDir, PKIDir, GossipKeyringFile), b, 0o600)
	}
}

// workerRing reads the ring a worker saved; ok false when it never did.
func workerRing(dataDir string) (gossipRing, bool, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, PKIDir, GossipKeyringFile))
	if errors.Is(err, os.ErrNotExist) {
		return gossipRing{}, false, nil
	}
	if err != nil {
		return gossipRing{}, false, err
	}
	var r gossipRing
	if err := json.Unmarshal(b, &r); err != nil || len(r.Keys) == 0 {
		return gossipRing{}, false, fmt.Errorf("gossip key ring %s: unreadable or empty (%v)", GossipKeyringFile, err)
	}
	return r, true, nil
}
