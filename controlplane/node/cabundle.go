package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane/pki"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// CA rotation (`ctl ca rotate`), as the control nodes carry it out.
//
// The cluster's CAs live in the store under caKey once a rotation has
// started: the signer with its key, the trusted set, and the previous
// signer with its key while the rotation runs. Every control node follows
// the key (caWatcher, like the deny list), puts it in force in its
// pki.Bundle — which every TLS config of the node reads at each handshake,
// so no port restarts — and saves it in its PKI directory for restarts.
// The key is in the store, and so in every Raft snapshot and every `ctl
// snapshot save` file: a snapshot file is as secret as ca.key (control
// nodes already hand the CA key to every control node that joins).
//
// Phases:
//
//	start     the new CA signs every certificate issued from now on; both
//	          CAs are trusted. Control nodes keep serving with certificates
//	          of the old CA (their renewals still use it), so that a worker
//	          or user that trusts only the old CA can still reach them to
//	          renew — and learns the new CA from the renewal's answer.
//	status    lists the identities whose current certificate (the last one
//	          the cluster issued them, certsPrefix) comes from another CA.
//	finish    refused while a node still holds one; then control nodes renew
//	          with the new CA ("finishing", both still trusted), and once
//	          every member has, the old CA is dropped: its certificates are
//	          refused at the handshake and open connections holding one are
//	          cut, on both ports.
//
// Join tokens pin a CA's public key. A token made before the rotation pins
// the old CA and works until finish (GetCA hands out the whole trusted set
// and the joiner picks the CA its pin names); after finish it fails with
// "cluster CA does not match the token's pin". Tokens made during and after
// a rotation pin the new CA (Tokens' pin is the signer's, read per token).
const (
	caKey = "/skiff/ca"
	// certsPrefix records, per identity, the CA of the last certificate
	// the cluster issued it: /skiff/certs/<identity>.
	certsPrefix = "/skiff/certs/"
)

// Rotation phases (caRecord.Rotation).
const (
	rotationStarted   = "started"
	rotationFinishing = "finishing"
)

// caRecord is the value at caKey.
type caRecord struct {
	// Signer and SignerKey are the CA that issues new certificates.
	Signer    []byte `json:"signer"`
	SignerKey []byte `json:"signerKey"`
	// Trusted is every trusted CA (PEM), the signer among them.
	Trusted []byte `json:"trusted"`
	// Previous and PreviousKey are the CA being replaced, while Rotation
	// is not empty: control nodes serve with it until finish.
	Previous    []byte    `json:"previous,omitempty"`
	PreviousKey []byte    `json:"previousKey,omitempty"`
	Rotation    string    `json:"rotation,omitempty"`
	StartedAt   time.Time `json:"startedAt,omitzero"`
	By          string    `json:"by,omitempty"`
}

// certRecord is the value at certsPrefix+identity.
type certRecord struct {
	Identity   string    `json:"identity"`
	Issuer     string    `json:"issuer"`
	IssuerPin  string    `json:"issuerPin"`
	NotBefore  time.Time `json:"notBefore"`
	NotAfter   time.Time `json:"notAfter"`
	RecordedAt time.Time `json:"recordedAt"`
}

// caWatcher keeps this node's bundle equal to the record at caKey.
type caWatcher struct {
	store  *consensus.Store
	bundle *pki.Bundle
	dir    string
	log    *slog.Logger
	// changed runs after the record in force changed (not on every read).
	changed func(caRecord)

	mu       sync.Mutex
	cur      caRecord
	previous *pki.CA // with key, while a rotation is started
}

// servingCA is the CA this control node's own certificate is renewed with:
// the previous one while a rotation is started (see the phases above).
func (w *caWatcher) servingCA() *pki.CA {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cur.Rotation == rotationStarted && w.previous != nil {
		return w.previous
	}
	return w.bundle.Signer()
}

// load reads the record from the local store (stale: as current as
// everything this node serves) and puts it in force.
func (w *caWatcher) load(ctx context.Context) (int64, error) {
	resp, err := w.store.Range(ctx, &storepb.RangeRequest{Key: []byte(caKey), Stale: true})
	if err != nil {
		return 0, fmt.Errorf("read the CA record: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return resp.Revision, nil // no rotation ever: the PKI directory's bundle stands
	}
	var rec caRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		// Written by this package only: keep the bundle in force rather
		// than trust a record that cannot be read.
		w.log.Error("unreadable CA record: the CAs in force are kept", "err", err)
		return resp.Revision, nil
	}
	if err := w.apply(rec); err != nil {
		w.log.Error("CA record refused: the CAs in force are kept", "err", err)
	}
	return resp.Revision, nil
}

func (w *caWatcher) apply(rec caRecord) error {
	signer, err := pki.ParseCA(rec.Signer, rec.SignerKey)
	if err != nil {
		return fmt.Errorf("signer: %w", err)
	}
	trusted, err := pki.ParseCertificatesPEM(rec.Trusted)
	if err != nil {
		return fmt.Errorf("trusted CAs: %w", err)
	}
	var previous *pki.CA
	if rec.Rotation != "" {
		if previous, err = pki.ParseCA(rec.Previous, rec.PreviousKey); err != nil {
			return fmt.Errorf("previous CA: %w", err)
		}
	}
	w.mu.Lock()
	same := w.cur.Rotation == rec.Rotation && string(w.bundle.Signer().CertPEM) == string(signer.CertPEM) && string(w.bundle.PEM()) == string(pemOf(trusted))
	w.cur, w.previous = rec, previous
	w.mu.Unlock()
	if same {
		return nil // e.g. a restart: the PKI directory already holds it
	}
	if err := w.bundle.Set(signer, trusted...); err != nil {
		return err
	}
	if err := w.bundle.Save(w.dir); err != nil {
		// In force now; a restart before the next save would start from
		// the directory's older bundle and catch up from the store.
		w.log.Error("saving the CA bundle in the PKI directory", "err", err)
	}
	w.log.Warn("cluster CAs changed", "rotation", rec.Rotation, "signer", signer.Cert.Subject.CommonName, "signer_pin", signer.Pin(), "trusted", len(w.bundle.Trusted()))
	if w.changed != nil {
		w.changed(rec)
	}
	return nil
}

func pemOf(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// run follows caKey until ctx ends.
func (w *caWatcher) run(ctx context.Context) error {
	for {
		err := w.follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		w.log.Debug("CA record watch ended; restarting", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(revocationRetry):
		}
	}
}

func (w *caWatcher) follow(ctx context.Context) error {
	rev, err := w.load(ctx)
	if err != nil {
		return err
	}
	wt, err := w.store.Watch(ctx, []byte(caKey), false, rev+1)
	if err != nil {
		return err
	}
	defer wt.Stop()
	for b := range wt.C {
		if len(b.Events) == 0 {
			continue
		}
		if _, err := w.load(ctx); err != nil {
			return err
		}
	}
	return wt.Err()
}

// caChanged reacts to a new CA record on this control node: when its own
// certificate is not from the CA it should now serve with, it renews at
// once; a shrunk trusted set cuts open connections from the dropped CA.
func (c *Control) caChanged(caRecord) {
	if cur := c.renewer.Current(); cur.Leaf == nil || cur.Leaf.CheckSignatureFrom(c.cas.servingCA().Cert) != nil {
		c.renewer.RenewNow()
	}
	c.recheckConnections()
	// admin.conf: an admin certificate of the signer, trusting the set.
	if path := filepath.Join(c.cfg.DataDir, AdminConfigFile); fileExists(path) && len(c.apiServers.get()) > 0 {
		if _, err := writeAdminConfig(c.cfg.DataDir, c.bundle.Signer(), c.bundle.PEM(), c.apiServers.get(), c.cfg.UserCertLifetime); err != nil {
			c.log.Error("rewriting admin.conf with the new CA", "err", err)
		}
	}
}

// recordCert writes which CA issued cert, for `ctl ca rotate status`.
func recordCert(ctx context.Context, s kv, bundle *pki.Bundle, cert *x509.Certificate) error {
	if cert == nil || cert.Subject.CommonName == "" {
		return errors.New("no certificate, or one without a common name")
	}
	rec := certRecord{Identity: cert.Subject.CommonName, Issuer: cert.Issuer.CommonName, NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, RecordedAt: time.Now()}
	for _, ca := range bundle.Trusted() {
		if cert.CheckSignatureFrom(ca) == nil {
			rec.IssuerPin = pki.PinOf(ca)
			break
		}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = s.Put(ctx, &storepb.PutRequest{Key: []byte(certsPrefix + rec.Identity), Value: b})
	return err
}

// certRecorder writes certificate records off the path of the call that
// issued them, retrying briefly: a lost record leaves the older one, which
// names an older CA, so status errs on the side of "not renewed".
type certRecorder struct {
	store  kv
	bundle *pki.Bundle
	log    *slog.Logger
}

func (r certRecorder) issued(ctx context.Context, cert *x509.Certificate) {
	if cert == nil {
		return
	}
	err := retry(context.WithoutCancel(ctx), 5*time.Second, func(ctx context.Context) error { return recordCert(ctx, r.store, r.bundle, cert) })
	if err != nil {
		r.log.Warn("recording the issuer of a certificate (ctl ca rotate status)", "identity", cert.Subject.CommonName, "err", err)
	}
}

// recordOwn records this control node's certificate whenever it changes.
func (c *Control) recordOwn(ctx context.Context) error {
	for {
		cur := c.renewer.Current()
		if err := retry(ctx, time.Minute, func(ctx context.Context) error { return recordCert(ctx, c.Store, c.bundle, cur.Leaf) }); err != nil && ctx.Err() == nil {
			c.log.Warn("recording this node's certificate issuer", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.ownRenewed:
		}
	}
}

// ownRenewedSignal is the renewer's OnRenewed: it wakes recordOwn.
func ownRenewedSignal(ch chan struct{}) func(tls.Certificate) {
	return func(tls.Certificate) {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// pruneCertRecords drops the records of certificates that have expired
// (a removed node, a user never renewed): they no longer matter to a
// rotation. The leader runs it with the token prune.
func pruneCertRecords(ctx context.Context, s kv, now time.Time) (int, error) {
	kvs, err := rangePrefix(ctx, s, certsPrefix)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, kv := range kvs {
		var rec certRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil || rec.NotAfter.IsZero() || !now.After(rec.NotAfter) {
			continue
		}
		rev := kv.ModRevision // only if unchanged since read: a renewal wins
		if _, err := s.Delete(ctx, &storepb.DeleteRequest{Key: kv.Key, IfModRevision: &rev}); err != nil && !errors.Is(err, consensus.ErrConflict) && !errors.Is(err, consensus.ErrKeyNotFound) {
			return n, err
		}
		n++
	}
	return n, nil
}
