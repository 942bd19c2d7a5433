package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane/pki"
	adminv1 "github.com/skiffhq/skiff/proto/admin/v1"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// snapshotChunkSize is the data carried per SnapshotChunk.
const snapshotChunkSize = 256 << 10

// adminServer implements skiff.admin.v1.Admin on a control node.
type adminServer struct {
	adminv1.UnimplementedAdminServer
	store    *consensus.Store
	tokens   *pki.Tokens
	bundle   *pki.Bundle
	self     controlRecord
	userLife time.Duration
	// clientTLS dials other control nodes' API ports as this node.
	clientTLS *tls.Config
	log       *slog.Logger
	// revocations writes the deny list (RevokeUser, RevokeNode, RemoveMember).
	revocations *revocations
	// members is this node's gossip member (GossipKeyring).
	members *memberView
}

func storeStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, pki.ErrBadToken), errors.Is(err, pki.ErrBadIdentity), errors.Is(err, pki.ErrBadCSR):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, pki.ErrTokenUnknown), errors.Is(err, consensus.ErrKeyNotFound):
		return status.Error(codes.NotFound, err.Error())
	}
	return consensus.ToStatus(err)
}

func tokenInfo(r pki.TokenRecord, now time.Time) *adminv1.Token {
	t := &adminv1.Token{Id: r.ID, Role: string(r.Role), Description: r.Description, Node: r.Node,
		CreatedAt: timestamppb.New(r.CreatedAt), ExpiresAt: timestamppb.New(r.ExpiresAt), State: r.State(now)}
	if r.RevokedAt != nil {
		t.RevokedAt = timestamppb.New(*r.RevokedAt)
	}
	return t
}

func (a *adminServer) CreateToken(ctx context.Context, req *adminv1.CreateTokenRequest) (*adminv1.CreateTokenResponse, error) {
	if err := requireAdmin(ctx, "create join tokens"); err != nil {
		return nil, err
	}
	role, err := pki.ParseJoinRole(req.GetRole())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "role: %q is not %q or %q", req.GetRole(), pki.JoinControl, pki.JoinWorker)
	}
	if req.GetTtlSeconds() < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "ttl_seconds %d must not be negative", req.GetTtlSeconds())
	}
	tok, rec, err := a.tokens.Create(ctx, pki.CreateTokenOptions{Role: role, TTL: time.Duration(req.GetTtlSeconds()) * time.Second,
		Description: req.GetDescription(), Node: req.GetNode()})
	if err != nil {
		return nil, storeStatus(err)
	}
	addrs, err := apiAddresses(ctx, a.store)
	if err != nil || len(addrs) == 0 {
		addrs = []string{a.self.APIAddress}
	}
	return &adminv1.CreateTokenResponse{Token: tok.String(), Info: tokenInfo(rec, time.Now()), ApiAddresses: addrs}, nil
}

func (a *adminServer) ListTokens(ctx context.Context, _ *adminv1.ListTokensRequest) (*adminv1.ListTokensResponse, error) {
	if err := requireAdmin(ctx, "list join tokens"); err != nil {
		return nil, err
	}
	recs, err := a.tokens.List(ctx)
	if err != nil {
		return nil, storeStatus(err)
	}
	out := &adminv1.ListTokensResponse{}
	now := time.Now()
	for _, r := range recs {
		out.Tokens = append(out.Tokens, tokenInfo(r, now))
	}
	return out, nil
}

func (a *adminServer) RevokeToken(ctx context.Context, req *adminv1.RevokeTokenRequest) (*adminv1.RevokeTokenResponse, error) {
	if err := requireAdmin(ctx, "revoke join tokens"); err != nil {
		return nil, err
	}
	if err := a.tokens.Revoke(ctx, req.GetId()); err != nil {
		return nil, storeStatus(err)
	}
	return &adminv1.RevokeTokenResponse{}, nil
}

func (a *adminServer) ListMembers(ctx context.Context, _ *adminv1.ListMembersRequest) (*adminv1.ListMembersResponse, error) {
	if err := requireAdmin(ctx, "list control nodes"); err != nil {
		return nil, err
	}
	recs, members, err := controlRecords(ctx, a.store)
	if err != nil {
		return nil, storeStatus(err)
	}
	out := &adminv1.ListMembersResponse{}
	for _, m := range members {
		out.Members = append(out.Members, &adminv1.Member{Id: m.Id, RaftAddress: m.Address, ApiAddress: recs[m.Id].APIAddress,
			Voter: m.Suffrage == storepb.Member_VOTER, Leader: m.Leader, Healthy: m.Healthy,
			LastContactMs: m.LastContactMs, AppliedIndex: m.AppliedIndex})
	}
	return out, nil
}

func (a *adminServer) RemoveMember(ctx context.Context, req *adminv1.RemoveMemberRequest) (*adminv1.RemoveMemberResponse, error) {
	if err := requireAdmin(ctx, "remove control nodes"); err != nil {
		return nil, err
	}
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "id: the member to remove is required (see `ctl members`)")
	}
	if req.GetId() == a.self.ID {
		// Once out of the membership this node can no longer write (its
		// peers refuse it), so it could not record the revocation; and a
		// removal forwarded from here would lose its answer when the
		// revocation cuts this node's connection. Unavailable makes ctl
		// move on to the next control node of its config.
		return nil, status.Errorf(codes.Unavailable, "control node %s cannot remove itself: ask another control node (ctl --server OTHER:7443 member remove %s; ctl does so by itself when its config lists several)",
			req.GetId(), req.GetId())
	}
	if err := a.store.RemoveMember(ctx, req.GetId()); err != nil {
		if errors.Is(err, consensus.ErrKeyNotFound) {
			return nil, status.Errorf(codes.NotFound, "no control node %q (see `ctl members`)", req.GetId())
		}
		return nil, storeStatus(err)
	}
	// Removed first, then revoked: revoking a voter that is still a member
	// would cut it off before the removal commits. Until the revocation
	// lands, the membership check already refuses it on the store port.
	if _, err := a.revoke(ctx, "control:"+req.GetId(), "control node removed from the store"); err != nil {
		return nil, status.Errorf(codes.Unavailable, "control node %s was removed from the store (both ports refuse a control identity that is not a member), "+
			"but writing the revocation of its certificates failed: %v", req.GetId(), status.Convert(err).Message())
	}
	return &adminv1.RemoveMemberResponse{}, nil
}

func (a *adminServer) SaveSnapshot(_ *adminv1.SaveSnapshotRequest, stream grpc.ServerStreamingServer[adminv1.SnapshotChunk]) error {
	ctx := stream.Context()
	if err := requireAdmin(ctx, "save snapshots"); err != nil {
		return err
	}
	w := &chunkWriter{send: func(b []byte) error { return stream.Send(&adminv1.SnapshotChunk{Data: b}) }}
	rev, err := a.store.SaveSnapshot(ctx, w)
	if err == nil {
		err = w.flush()
	}
	if err != nil {
		return storeStatus(err)
	}
	return stream.Send(&adminv1.SnapshotChunk{Revision: rev})
}

// chunkWriter turns the store's snapshot writes into stream messages of
// snapshotChunkSize.
type chunkWriter struct {
	buf  []byte
	send func([]byte) error
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		take := min(snapshotChunkSize-len(w.buf), len(p))
		w.buf = append(w.buf, p[:take]...)
		p = p[take:]
		if len(w.buf) == snapshotChunkSize {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	err := w.send(w.buf)
	w.buf = nil
	return err
}

func (a *adminServer) RestoreSnapshot(stream grpc.ClientStreamingServer[adminv1.SnapshotChunk, adminv1.RestoreSnapshotResponse]) error {
	ctx := stream.Context()
	if err := requireAdmin(ctx, "restore snapshots"); err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "restore: no snapshot data received: %v", err)
	}
	if first.GetSize() <= 0 {
		return status.Error(codes.InvalidArgument, "restore: the first message must carry the snapshot's size in bytes")
	}
	if !a.store.IsLeader() {
		return a.forwardRestore(ctx, first, stream)
	}
	r := &chunkReader{first: first.GetData(), recv: stream.Recv}
	rev, err := a.store.RestoreSnapshot(ctx, r, first.GetSize())
	if err != nil {
		return storeStatus(fmt.Errorf("restore: %w", err))
	}
	if r.n != first.GetSize() {
		a.log.Warn("restore: snapshot size differs from what was sent", "declared", first.GetSize(), "received", r.n)
	}
	// The restored state carries the old cluster's node records: put this
	// node's back at once (the others re-register within their interval).
	if err := registerControl(ctx, a.store, a.self); err != nil {
		a.log.Warn("re-register after restore", "err", err)
	}
	a.log.Warn("store restored from a snapshot: the previous state is gone", "revision", rev)
	return stream.SendAndClose(&adminv1.RestoreSnapshotResponse{Revision: rev})
}

// forwardRestore streams a restore on to the leader's API port.
func (a *adminServer) forwardRestore(ctx context.Context, first *adminv1.SnapshotChunk,
	in grpc.ClientStreamingServer[adminv1.SnapshotChunk, adminv1.RestoreSnapshotResponse]) error {
	leaderID, _ := a.store.Leader()
	if leaderID == "" {
		return status.Error(codes.Unavailable, "restore: no leader (election in progress or quorum lost)")
	}
	recs, _, err := controlRecords(ctx, a.store)
	if err != nil {
		return storeStatus(err)
	}
	addr := recs[leaderID].APIAddress
	if addr == "" {
		return status.Errorf(codes.Unavailable, "restore: the leader %s has not registered its API address yet; retry", leaderID)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(a.clientTLS.Clone())))
	if err != nil {
		return status.Errorf(codes.Unavailable, "restore: dial leader %s at %s: %v", leaderID, addr, err)
	}
	defer conn.Close()
	out, err := adminv1.NewAdminClient(conn).RestoreSnapshot(ctx)
	if err != nil {
		return err
	}
	msg := first
	for {
		if err := out.Send(msg); err != nil {
			break // the leader's answer (CloseAndRecv) says why
		}
		if msg, err = in.Recv(); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
	}
	resp, err := out.CloseAndRecv()
	if err != nil {
		return err
	}
	return in.SendAndClose(resp)
}

// chunkReader reads the data of a stream of SnapshotChunks.
type chunkReader struct {
	first []byte
	cur   []byte
	recv  func() (*adminv1.SnapshotChunk, error)
	n     int64
	done  bool
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.first != nil {
		r.cur, r.first = r.first, nil
	}
	for len(r.cur) == 0 {
		if r.done {
			return 0, io.EOF
		}
		c, err := r.recv()
		if err == io.EOF {
			r.done = true
			return 0, io.EOF
		}
		if err != nil {
			return 0, err
		}
		r.cur = c.GetData()
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	r.n += int64(n)
	return n, nil
}

func (a *adminServer) CreateUser(ctx context.Context, req *adminv1.CreateUserRequest) (*adminv1.CreateUserResponse, error) {
	if err := requireAdmin(ctx, "create users"); err != nil {
		return nil, err
	}
	id, err := pki.UserIdentity(req.GetName(), pki.Role(req.GetRole()))
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	csr, err := pki.ParseCSRPEM(req.GetCsrPem())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr_pem: %v", err)
	}
	life := a.userLife
	if req.GetTtlSeconds() < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "ttl_seconds %d must not be negative", req.GetTtlSeconds())
	} else if req.GetTtlSeconds() > 0 {
		life = time.Duration(req.GetTtlSeconds()) * time.Second
	}
	kp, issued, err := a.bundle.Signer().SignCSR(csr, pki.IssueOptions{Identity: id, Lifetime: life})
	if err != nil {
		return nil, storeStatus(err)
	}
	certRecorder{store: a.store, bundle: a.bundle, log: a.log}.issued(ctx, issued)
	addrs, err := apiAddresses(ctx, a.store)
	if err != nil || len(addrs) == 0 {
		addrs = []string{a.self.APIAddress}
	}
	a.log.Info("user certificate issued", "identity", id.User, "role", id.Role)
	return &adminv1.CreateUserResponse{CertificatePem: kp.CertPEM, CaBundlePem: a.bundle.PEM(), ApiAddresses: addrs, Identity: id.User}, nil
}

// revoke writes a revocation in the caller's name, retrying briefly (a
// leader change must not leave a removed member unrevoked).
func (a *adminServer) revoke(ctx context.Context, identity, reason string) (pki.Revocation, error) {
	by := "unknown"
	if id, err := callerIdentity(ctx); err == nil {
		by = id.User
	}
	var rec pki.Revocation
	err := retry(ctx, 10*time.Second, func(ctx context.Context) error {
		var err error
		rec, err = a.revocations.revoke(ctx, identity, by, reason)
		return err
	})
	if err != nil {
		return pki.Revocation{}, storeStatus(err)
	}
	return rec, nil
}

func (a *adminServer) revokeIdentity(ctx context.Context, req *adminv1.RevokeIdentityRequest, role pki.Role) (*adminv1.RevokeIdentityResponse, error) {
	var (
		id  pki.Identity
		err error
	)
	if role == pki.RoleNode {
		id, err = pki.NodeIdentity(req.GetName())
	} else {
		// Admin or viewer: the identity is user:<name> either way.
		id, err = pki.UserIdentity(req.GetName(), pki.RoleViewer)
	}
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "name: %v", err)
	}
	if caller, cerr := callerIdentity(ctx); cerr == nil && caller.User == id.User {
		return nil, status.Errorf(codes.InvalidArgument, "name: %s may not revoke itself (another admin can)", id.User)
	}
	reason := req.GetReason()
	if reason == "" {
		reason = "revoked by an admin"
	}
	rec, err := a.revoke(ctx, id.User, reason)
	if err != nil {
		return nil, err
	}
	return &adminv1.RevokeIdentityResponse{Identity: rec.Identity, RevokedAt: timestamppb.New(rec.RevokedAt), Expires: timestamppb.New(rec.Expires)}, nil
}

// RevokeUser refuses every certificate issued to user:<name> until now.
func (a *adminServer) RevokeUser(ctx context.Context, req *adminv1.RevokeIdentityRequest) (*adminv1.RevokeIdentityResponse, error) {
	if err := requireAdmin(ctx, "revoke users"); err != nil {
		return nil, err
	}
	return a.revokeIdentity(ctx, req, pki.RoleAdmin)
}

// RevokeNode refuses every certificate issued to node:<name> until now.
func (a *adminServer) RevokeNode(ctx context.Context, req *adminv1.RevokeIdentityRequest) (*adminv1.RevokeIdentityResponse, error) {
	if err := requireAdmin(ctx, "revoke nodes"); err != nil {
		return nil, err
	}
	return a.revokeIdentity(ctx, req, pki.RoleNode)
}
