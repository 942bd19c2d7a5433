package node

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane/pki"
	adminv1 "github.com/skiffhq/skiff/proto/admin/v1"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// Rotation phases asked for in RotateCARequest.Phase.
const (
	phaseStart  = "start"
	phaseStatus = "status"
	phaseFinish = "finish"
)

// nodesPrefix is where the API keeps Node objects (kinds.Kind.Key).
const nodesPrefix = "/registry/nodes/"

// finishWait bounds how long finish waits for the control nodes to renew
// with the new CA (they do so within a second of seeing "finishing").
const finishWait = 30 * time.Second

// RotateCA implements the admin RPC (see cabundle.go for the phases).
func (a *adminServer) RotateCA(ctx context.Context, req *adminv1.RotateCARequest) (*adminv1.RotateCAResponse, error) {
	if err := requireAdmin(ctx, "rotate the cluster CA"); err != nil {
		return nil, err
	}
	switch req.GetPhase() {
	case phaseStart:
		if err := a.rotateStart(ctx); err != nil {
			return nil, err
		}
	case phaseStatus:
	case phaseFinish:
		if err := a.rotateFinish(ctx); err != nil {
			return nil, err
		}
	default:
		return nil, status.Errorf(codes.InvalidArgument, "phase: %q is not %q, %q or %q", req.GetPhase(), phaseStart, phaseStatus, phaseFinish)
	}
	return a.rotationStatus(ctx)
}

// readCA reads the CA record (linearizable); ok is false when no rotation
// ever happened, and rev is what a write must expect.
func (a *adminServer) readCA(ctx context.Context) (rec caRecord, rev int64, ok bool, err error) {
	kv, _, err := a.store.Get(ctx, []byte(caKey))
	if err != nil {
		return caRecord{}, 0, false, storeStatus(err)
	}
	if kv == nil {
		return caRecord{}, 0, false, nil
	}
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return caRecord{}, 0, false, status.Errorf(codes.Internal, "CA record %s: %v", caKey, err)
	}
	return rec, kv.ModRevision, true, nil
}

func (a *adminServer) writeCA(ctx context.Context, rec caRecord, rev int64) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := a.store.Put(ctx, &storepb.PutRequest{Key: []byte(caKey), Value: b, IfModRevision: &rev}); err != nil {
		if errors.Is(err, consensus.ErrConflict) {
			return status.Error(codes.Aborted, "the CA record changed meanwhile (another rotation call?): look at `ctl ca rotate status` and retry")
		}
		return storeStatus(err)
	}
	return nil
}

func (a *adminServer) rotateStart(ctx context.Context) error {
	rec, rev, ok, err := a.readCA(ctx)
	if err != nil {
		return err
	}
	if ok && rec.Rotation != "" {
		return status.Errorf(codes.FailedPrecondition, "a CA rotation is already %s (since %s, by %s): see `ctl ca rotate status`, then `ctl ca rotate finish`",
			rec.Rotation, rec.StartedAt.UTC().Format(time.RFC3339), rec.By)
	}
	old := a.bundle.Signer()
	if ok {
		if old, err = pki.ParseCA(rec.Signer, rec.SignerKey); err != nil {
			return status.Errorf(codes.Internal, "CA record: %v", err)
		}
	}
	oldKey, err := old.KeyPEM()
	if err != nil {
		return status.Errorf(codes.FailedPrecondition, "%v", err)
	}
	now := time.Now()
	cfg := pki.DefaultCAConfig()
	cfg.CommonName = "skiff cluster CA " + now.UTC().Format("2006-01-02T15:04:05Z")
	next, err := pki.CreateCA(cfg)
	if err != nil {
		return status.Errorf(codes.Internal, "%v", err)
	}
	nextKey, err := next.KeyPEM()
	if err != nil {
		return status.Errorf(codes.Internal, "%v", err)
	}
	by := "unknown"
	if id, err := callerIdentity(ctx); err == nil {
		by = id.User
	}
	err = a.writeCA(ctx, caRecord{Signer: next.CertPEM, SignerKey: nextKey, Trusted: append(append([]byte(nil), next.CertPEM...), old.CertPEM...),
		Previous: old.CertPEM, PreviousKey: oldKey, Rotation: rotationStarted, StartedAt: now, By: by}, rev)
	if err != nil {
		return err
	}
	a.log.Warn("CA rotation started", "by", by, "new_ca", cfg.CommonName, "new_pin", next.Pin(), "old_pin", old.Pin())
	return nil
}

func (a *adminServer) rotateFinish(ctx context.Context) error {
	rec, rev, ok, err := a.readCA(ctx)
	if err != nil {
		return err
	}
	if !ok || rec.Rotation == "" {
		return status.Error(codes.FailedPrecondition, "no CA rotation in progress: `ctl ca rotate start` begins one")
	}
	st, err := a.rotationStatus(ctx)
	if err != nil {
		return err
	}
	var blocking []string
	for _, p := range st.Pending {
		if p.BlocksFinish {
			blocking = append(blocking, p.Identity)
		}
	}
	if len(blocking) > 0 {
		return status.Errorf(codes.FailedPrecondition, "%d node(s) still hold a certificate of the old CA and would be cut off: %s; running workers renew within minutes of the start (they poll the cluster's CAs); a Node whose machine is gone is removed with `ctl delete node NAME`; see `ctl ca rotate status`",
			len(blocking), strings.Join(blocking, ", "))
	}
	if err := callerSignedBy(ctx, rec.Signer); err != nil {
		return err
	}
	if rec.Rotation == rotationStarted {
		rec.Rotation = rotationFinishing
		if err := a.writeCA(ctx, rec, rev); err != nil {
			return err
		}
		if rec, rev, _, err = a.readCA(ctx); err != nil {
			return err
		}
	}
	// Every control node now renews with the new CA; drop the old one only
	// once all have, so that no member is cut off by its peers.
	signerPin := pinOfPEM(rec.Signer)
	deadline := time.Now().Add(finishWait)
	for {
		behind, err := a.controlNodesBehind(ctx, signerPin)
		if err != nil {
			return err
		}
		if len(behind) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return status.Errorf(codes.Unavailable, "control node(s) %s have not renewed with the new CA within %s (down?); the old CA stays trusted: run `ctl ca rotate finish` again once they are up",
				strings.Join(behind, ", "), finishWait)
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	final := caRecord{Signer: rec.Signer, SignerKey: rec.SignerKey, Trusted: rec.Signer}
	if err := a.writeCA(ctx, final, rev); err != nil {
		return err
	}
	a.log.Warn("CA rotation finished: the old CA is no longer trusted", "signer_pin", signerPin)
	return nil
}

func pinOfPEM(certPEM []byte) string {
	certs, err := pki.ParseCertificatesPEM(certPEM)
	if err != nil {
		return ""
	}
	return pki.PinOf(certs[0])
}

// certRecords reads every certificate record, by identity.
func (a *adminServer) certRecords(ctx context.Context) (map[string]certRecord, error) {
	kvs, err := rangePrefix(ctx, a.store, certsPrefix)
	if err != nil {
		return nil, storeStatus(err)
	}
	out := make(map[string]certRecord, len(kvs))
	for _, kv := range kvs {
		var r certRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil || r.Identity == "" {
			continue
		}
		out[r.Identity] = r
	}
	return out, nil
}

// controlNodesBehind lists the members whose recorded certificate is not
// from the signer.
func (a *adminServer) controlNodesBehind(ctx context.Context, signerPin string) ([]string, error) {
	members, err := a.store.Members(ctx)
	if err != nil {
		return nil, storeStatus(err)
	}
	recs, err := a.certRecords(ctx)
	if err != nil {
		return nil, err
	}
	var behind []string
	for _, m := range members {
		if r, ok := recs["control:"+m.Id]; !ok || r.IssuerPin != signerPin {
			behind = append(behind, m.Id)
		}
	}
	return behind, nil
}

// rotationStatus answers with the CAs in force and the holders of
// unexpired, unrevoked certificates of another CA than the signer.
func (a *adminServer) rotationStatus(ctx context.Context) (*adminv1.RotateCAResponse, error) {
	rec, _, ok, err := a.readCA(ctx)
	if err != nil {
		return nil, err
	}
	out := &adminv1.RotateCAResponse{}
	var signer *x509.Certificate
	var trusted []*x509.Certificate
	if ok {
		out.Rotation = rec.Rotation
		if trusted, err = pki.ParseCertificatesPEM(rec.Trusted); err != nil {
			return nil, status.Errorf(codes.Internal, "CA record: %v", err)
		}
		certs, err := pki.ParseCertificatesPEM(rec.Signer)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "CA record: %v", err)
		}
		signer = certs[0]
		out.CaBundlePem = rec.Trusted
	} else {
		trusted, signer = a.bundle.Trusted(), a.bundle.Signer().Cert
		out.CaBundlePem = a.bundle.PEM()
	}
	out.SignerPin = pki.PinOf(signer)
	for _, c := range trusted {
		out.TrustedPins = append(out.TrustedPins, pki.PinOf(c))
	}
	recs, err := a.certRecords(ctx)
	if err != nil {
		return nil, err
	}
	members, err := a.store.Members(ctx)
	if err != nil {
		return nil, storeStatus(err)
	}
	memberIDs := make([]string, 0, len(members))
	for _, m := range members {
		memberIDs = append(memberIDs, m.Id)
		if _, ok := recs["control:"+m.Id]; !ok {
			// A member that has not recorded its certificate yet (it does
			// so within seconds of starting): unknown, so not renewed.
			recs["control:"+m.Id] = certRecord{Identity: "control:" + m.Id, Issuer: "(not recorded yet)"}
		}
	}
	// Workers whose certificate was never recorded (joined before this
	// version): unknown, so they count as not renewed.
	nodes, err := rangePrefix(ctx, a.store, nodesPrefix)
	if err != nil {
		return nil, storeStatus(err)
	}
	for _, kv := range nodes {
		id := "node:" + strings.TrimPrefix(string(kv.Key), nodesPrefix)
		if _, ok := recs[id]; !ok {
			recs[id] = certRecord{Identity: id, Issuer: "(not recorded: renews at its next renewal)"}
		}
	}
	now := time.Now()
	for _, r := range recs {
		if r.IssuerPin == out.SignerPin || (!r.NotAfter.IsZero() && now.After(r.NotAfter)) {
			continue
		}
		name, isControl := strings.CutPrefix(r.Identity, "control:")
		if isControl && !slices.Contains(memberIDs, name) {
			continue // a removed member: revoked, whatever its CA
		}
		if a.revocations != nil && a.revocations.deny.Check(&x509.Certificate{Subject: pkix.Name{CommonName: r.Identity}, NotBefore: r.NotBefore}) != nil {
			continue
		}
		h := &adminv1.CAHolder{Identity: r.Identity, Issuer: r.Issuer, IssuerPin: r.IssuerPin}
		if !r.NotAfter.IsZero() {
			h.NotAfter = timestamppb.New(r.NotAfter)
		}
		// Workers must renew before finish. Control nodes renew at finish
		// (they serve with the old CA until then); users are told, not
		// waited for: their old certificates stop working at finish.
		h.BlocksFinish = strings.HasPrefix(r.Identity, "node:")
		out.Pending = append(out.Pending, h)
	}
	sort.Slice(out.Pending, func(i, j int) bool { return out.Pending[i].Identity < out.Pending[j].Identity })
	return out, nil
}

// callerSignedBy refuses a finish asked with a certificate of the old CA:
// finish cuts every connection holding one, the caller's own included, so
// its answer would be lost (and the caller locked out) half-way.
func callerSignedBy(ctx context.Context, signerPEM []byte) error {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return nil
	}
	signers, err := pki.ParseCertificatesPEM(signerPEM)
	if err != nil || len(signers) == 0 {
		return status.Errorf(codes.Internal, "the stored signing CA does not parse: %v", err)
	}
	if info.State.PeerCertificates[0].CheckSignatureFrom(signers[0]) != nil {
		return status.Error(codes.FailedPrecondition, "your certificate comes from the old CA, which finish drops (cutting this very connection): "+
			"use the admin.conf the control nodes rewrote with the new CA, or renew first with `ctl user renew`")
	}
	return nil
}
