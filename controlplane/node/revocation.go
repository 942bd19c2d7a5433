package node

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane/pki"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// revocationsPrefix holds the deny list: one JSON pki.Revocation per
// /skiff/revocations/<identity>. Outside /registry/, so the API never
// serves it; only control nodes reach it (through the consensus port).
const revocationsPrefix = "/skiff/revocations/"

// revocationRetry is how soon a failed deny-list watch starts again.
const revocationRetry = 200 * time.Millisecond

// errNotMember: a control identity that is not in the store's membership.
var errNotMember = errors.New("not a member of the store")

// revocations keeps this node's pki.DenyList equal to the replicated deny
// list. It reads this node's own store (a stale read: no quorum needed, and
// exactly as current as everything else this node serves) and watches the
// prefix, so a revocation committed anywhere is in force here as soon as
// this node applies it — milliseconds on a healthy cluster.
type revocations struct {
	store  *consensus.Store
	deny   *pki.DenyList
	bundle *pki.Bundle
	log    *slog.Logger
	// changed runs after every refresh: it closes open connections whose
	// certificates are now refused.
	changed func()
}

// load reads the whole list from the local store and puts it in force.
func (r *revocations) load(ctx context.Context) (int64, error) {
	resp, err := r.store.Range(ctx, &storepb.RangeRequest{Key: []byte(revocationsPrefix), Prefix: true, Stale: true})
	if err != nil {
		return 0, fmt.Errorf("read the deny list: %w", err)
	}
	recs := make([]pki.Revocation, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var rec pki.Revocation
		if err := json.Unmarshal(kv.Value, &rec); err != nil || rec.Identity == "" {
			// Written by this package only; a record it cannot read is a
			// bug or a newer version, and must not stop the others.
			r.log.Error("unreadable revocation record: ignored", "key", string(kv.Key), "err", err)
			continue
		}
		recs = append(recs, rec)
	}
	r.deny.Replace(recs)
	return resp.Revision, nil
}

// run refreshes the list on every change under the prefix until ctx ends.
func (r *revocations) run(ctx context.Context) error {
	for {
		err := r.follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		// Compaction after a snapshot install, a restore, a slow watcher:
		// re-read and watch again.
		r.log.Debug("deny list watch ended; restarting", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(revocationRetry):
		}
	}
}

func (r *revocations) follow(ctx context.Context) error {
	rev, err := r.load(ctx)
	if err != nil {
		return err
	}
	r.changed()
	w, err := r.store.Watch(ctx, []byte(revocationsPrefix), true, rev+1)
	if err != nil {
		return err
	}
	defer w.Stop()
	for b := range w.C {
		if len(b.Events) == 0 {
			continue
		}
		if _, err := r.load(ctx); err != nil {
			return err
		}
		r.changed()
	}
	return w.Err()
}

// revoke denies every certificate issued to identity until now.
func (r *revocations) revoke(ctx context.Context, identity, by, reason string) (pki.Revocation, error) {
	now := time.Now()
	rec := pki.Revocation{Identity: identity, RevokedAt: now, Expires: pki.RevocationExpiry(r.bundle.Trusted(), now), By: by, Reason: reason}
	b, err := json.Marshal(rec)
	if err != nil {
		return pki.Revocation{}, err
	}
	if _, err := r.store.Put(ctx, &storepb.PutRequest{Key: []byte(revocationsPrefix + identity), Value: b}); err != nil {
		return pki.Revocation{}, fmt.Errorf("write the revocation of %s: %w", identity, err)
	}
	r.log.Warn("certificates revoked", "identity", identity, "by", by, "reason", reason)
	return rec, nil
}

// prune drops records no certificate they cover can outlive; the leader
// runs it with the token prune.
func (r *revocations) prune(ctx context.Context, now time.Time) (int, error) {
	kvs, err := rangePrefix(ctx, r.store, revocationsPrefix)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, kv := range kvs {
		var rec pki.Revocation
		if err := json.Unmarshal(kv.Value, &rec); err != nil || !now.After(rec.Expires) {
			continue
		}
		rev := kv.ModRevision // only if unchanged since read: a re-revocation wins
		if _, err := r.store.Delete(ctx, &storepb.DeleteRequest{Key: kv.Key, IfModRevision: &rev}); err != nil && !errors.Is(err, consensus.ErrConflict) && !errors.Is(err, consensus.ErrKeyNotFound) {
			return n, err
		}
		n++
	}
	return n, nil
}

// storePeerIdentity is consensus.Config.PeerIdentity: the consensus port
// serves control identities only ("control:<id>", the member id), and
// none revoked. The store then checks the id against its membership.
func storePeerIdentity(deny *pki.DenyList, bundle *pki.Bundle) func(*x509.Certificate) (string, error) {
	return func(cert *x509.Certificate) (string, error) {
		id, err := pki.IdentityFromCert(cert)
		if err != nil {
			return "", err
		}
		if id.Role != pki.RoleControl {
			return "", fmt.Errorf("%s is not a control node: the store port serves control nodes only (use the API port)", id)
		}
		if err := deny.Check(cert); err != nil {
			return "", err
		}
		// The handshake verified the chain; this holds open connections to
		// the trusted set when a CA rotation drops a CA.
		if err := bundle.Verify(cert); err != nil {
			return "", err
		}
		return id.Name, nil
	}
}

// checkAPIClient is run at every TLS handshake with a client certificate
// on the API port, and again on open connections when the deny list
// changes: revoked certificates are refused; a control identity must name
// a current member (a removed control node keeps the CA key and could sign
// itself a fresh certificate, which no revocation of its old ones covers).
// Anything else is left to the per-call authorizer.
func (c *Control) checkAPIClient(cert *x509.Certificate) error {
	if err := c.deny.Check(cert); err != nil {
		return err
	}
	if err := c.bundle.Verify(cert); err != nil {
		return err // an open connection from a CA a rotation dropped
	}
	id, err := pki.IdentityFromCert(cert)
	if err != nil || id.Role != pki.RoleControl || id.Name == c.state.Name {
		return nil
	}
	members := c.Store.MemberIDs()
	if len(members) == 0 {
		members = c.state.JoinMembers // joined, not yet reached by the leader
	}
	if !slices.Contains(members, id.Name) {
		return fmt.Errorf("%w: control node %q", errNotMember, id.Name)
	}
	return nil
}
