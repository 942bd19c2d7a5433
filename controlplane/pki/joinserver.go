package pki

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	joinv1 "github.com/skiffhq/skiff/proto/join/v1"
)

// ErrNameInUse means a worker asked to join under the name of a live
// Node. CheckJoin wraps it; the operator picks another name or makes a
// token bound to this one.
var ErrNameInUse = errors.New("node name is held by a live node")

// errorDomain tags the ErrorInfo details of join errors so that the
// client can turn them back into this package's sentinel errors.
const errorDomain = "join.skiff.dev"

// ControlMembers adds joining control nodes to the replicated store. The
// control plane implements it over consensus.Store.AddMember + Members.
type ControlMembers interface {
	AddControlNode(ctx context.Context, id, raftAddress string) (ControlJoinInfo, error)
}

// Member is one store member.
type Member struct {
	ID      string
	Address string
	Voter   bool
}

// ControlJoinInfo is what a joining control node learns about the store.
type ControlJoinInfo struct {
	// Voter says whether the node was added as a voter.
	Voter   bool
	Members []Member
}

// JoinServerConfig configures the join service.
type JoinServerConfig struct {
	// CA signs joins and renewals; it must hold its key. Bundle, when
	// set, replaces it: its signer of the moment signs, and joining and
	// renewing nodes get its trusted set (a CA rotation changes both).
	CA     *CA
	Bundle *Bundle
	// Tokens validates join tokens.
	Tokens *Tokens
	// Members adds control nodes to the store; nil refuses control joins.
	Members ControlMembers
	// APIAddresses lists control nodes' API addresses for joiners (optional).
	APIAddresses func(ctx context.Context) ([]string, error)
	// GossipKey is handed to every joined node (optional).
	GossipKey func(ctx context.Context) ([]byte, error)
	// GossipKeys returns the whole gossip key ring, primary first (served
	// to nodes and control nodes by GossipKeys; optional).
	GossipKeys func(ctx context.Context) ([][]byte, error)
	// CheckJoin may refuse an identity before it is issued, e.g. a node
	// name that belongs to a live Node (optional; wrap ErrNameInUse for
	// that). It is not asked for joins with a token bound to the name
	// (`ctl token create --node`). A gRPC status error is passed on as is;
	// others become PermissionDenied.
	CheckJoin func(ctx context.Context, id Identity) error
	// Issued is told every certificate the service signs, after it signed
	// it (optional): the control plane records which CA each identity's
	// current certificate comes from, for CA rotations.
	Issued func(ctx context.Context, cert *x509.Certificate)
	// CheckRenew may refuse a renewal, e.g. of a removed member (optional).
	CheckRenew func(ctx context.Context, id Identity) error
	// NodeCertLifetime is the lifetime of node and control certificates.
	NodeCertLifetime time.Duration
	// UserCertLifetime caps the lifetime of a renewed user certificate (a
	// renewal keeps the lifetime the certificate was issued with, up to
	// this).
	UserCertLifetime time.Duration
	// FailureLimit slows down repeated failed joins from one address.
	FailureLimit FailureLimitConfig
	// Now is the clock of the failure limit; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// DefaultJoinServerConfig returns defaults; CA and Tokens must be set.
func DefaultJoinServerConfig() JoinServerConfig {
	return JoinServerConfig{NodeCertLifetime: DefaultNodeCertLifetime, UserCertLifetime: DefaultUserCertLifetime,
		FailureLimit: DefaultFailureLimitConfig(), Logger: slog.Default()}
}

// JoinServer implements skiff.join.v1.Join. Register it on both gRPC
// servers of a SplitListener: anonymous callers use GetCA and Join,
// RenewCertificate requires a verified client certificate.
type JoinServer struct {
	joinv1.UnimplementedJoinServer
	cfg      JoinServerConfig
	bundle   *Bundle
	log      *slog.Logger
	failures *failureLimiter
}

// NewJoinServer checks cfg and returns the service.
func NewJoinServer(cfg JoinServerConfig) (*JoinServer, error) {
	bundle := cfg.Bundle
	if bundle == nil && cfg.CA != nil {
		var err error
		if bundle, err = NewBundle(cfg.CA); err != nil {
			return nil, fmt.Errorf("join server: %w", err)
		}
	}
	if bundle == nil || bundle.Signer().Key == nil {
		return nil, errors.New("join server: CA with its key is required")
	}
	if cfg.Tokens == nil {
		return nil, errors.New("join server: Tokens is required")
	}
	if cfg.NodeCertLifetime <= 0 {
		cfg.NodeCertLifetime = DefaultNodeCertLifetime
	}
	if cfg.UserCertLifetime <= 0 {
		cfg.UserCertLifetime = DefaultUserCertLifetime
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &JoinServer{cfg: cfg, bundle: bundle, log: cfg.Logger.With("component", "join"), failures: newFailureLimiter(cfg.FailureLimit, cfg.Now)}, nil
}

// GetCA implements joinv1.JoinServer.
func (s *JoinServer) GetCA(context.Context, *joinv1.GetCARequest) (*joinv1.GetCAResponse, error) {
	return &joinv1.GetCAResponse{CaBundlePem: s.bundle.PEM()}, nil
}

// Join implements joinv1.JoinServer.
func (s *JoinServer) Join(ctx context.Context, req *joinv1.JoinRequest) (*joinv1.JoinResponse, error) {
	log := s.log.With("remote", remoteAddr(ctx), "token", req.GetTokenId(), "node", req.GetNodeName(), "role", req.GetRole().String())
	resp, err := s.join(ctx, req)
	if err != nil {
		log.Warn("join refused", "err", err)
		return nil, toJoinStatus(err)
	}
	log.Info("node joined", "identity", resp.Identity)
	return resp, nil
}

func (s *JoinServer) join(ctx context.Context, req *joinv1.JoinRequest) (*joinv1.JoinResponse, error) {
	remote := remoteAddr(ctx)
	if wait := s.failures.wait(remote); wait > 0 {
		// Refused before the token is looked at: guessing costs the
		// guesser time, not the store reads.
		return nil, fmt.Errorf("%w (%s): the next attempt is looked at in %s", ErrTooManyFailures, remoteHost(remote), wait.Round(time.Second))
	}
	var role JoinRole
	switch req.GetRole() {
	case joinv1.Role_ROLE_CONTROL:
		role = JoinControl
	case joinv1.Role_ROLE_WORKER:
		role = JoinWorker
	default:
		return nil, invalidf("role: %v is not control or worker", req.GetRole())
	}
	rec, err := s.cfg.Tokens.Validate(ctx, req.GetTokenId(), req.GetTokenSecret(), role)
	if err != nil {
		if isTokenFailure(err) { // not a store outage: that is nobody's guess
			s.failures.fail(remote)
		}
		return nil, err
	}
	var id Identity
	if role == JoinControl {
		id, err = ControlIdentity(req.GetNodeName())
	} else {
		id, err = NodeIdentity(req.GetNodeName())
	}
	if err != nil {
		return nil, invalidf("node_name: %v", err)
	}
	if rec.Node != "" && rec.Node != id.Name {
		s.failures.fail(remote)
		return nil, fmt.Errorf("%w: token %q may only join node %q, not %q", ErrTokenNode, rec.ID, rec.Node, id.Name)
	}
	if req.GetAdvertiseAddress() == "" {
		return nil, invalidf("advertise_address: required (host:port this node is reached at)")
	}
	advHost, _, err := net.SplitHostPort(req.GetAdvertiseAddress())
	if err != nil {
		return nil, invalidf("advertise_address %q: %v", req.GetAdvertiseAddress(), err)
	}
	if role == JoinControl {
		if _, _, err := net.SplitHostPort(req.GetRaftAddress()); err != nil {
			return nil, invalidf("raft_address %q: a control node needs host:port of its store port: %v", req.GetRaftAddress(), err)
		}
	} else if len(req.GetExtraSans()) > 0 {
		return nil, invalidf("extra_sans %q: a worker certificate names only the node's own address (its advertise address, when the join comes from it); it serves no other name", req.GetExtraSans())
	}
	csr, err := ParseCSRPEM(req.GetCsrPem())
	if err != nil {
		return nil, invalidf("csr_pem: %v", err)
	}
	if s.cfg.CheckJoin != nil && rec.Node != id.Name {
		if err := s.cfg.CheckJoin(ctx, id); err != nil {
			return nil, refused(err)
		}
	}
	opts := IssueOptions{Identity: id, Lifetime: s.cfg.NodeCertLifetime}
	if role == JoinControl {
		// Control nodes serve the API and the store port under the names
		// they were given: control tokens are for trusted machines.
		opts.Server = true
		opts.Hosts = append([]string{req.GetAdvertiseAddress(), req.GetRaftAddress()}, req.GetExtraSans()...)
	} else {
		// A worker serves its stream port (7445) at its own address only;
		// without one it serves nothing (nodeserving.go).
		opts.Hosts = ownAddress(remote, advHost)
		opts.Server = len(opts.Hosts) > 0
	}
	signer := s.bundle.Signer()
	kp, issued, err := signer.SignCSR(csr, opts)
	if err != nil {
		if errors.Is(err, ErrBadCSR) || errors.Is(err, ErrBadIdentity) {
			return nil, invalidf("%v", err)
		}
		return nil, err
	}
	resp := &joinv1.JoinResponse{CertificatePem: kp.CertPEM, CaBundlePem: s.bundle.PEM(), Identity: id.User}
	if s.cfg.APIAddresses != nil {
		if resp.ApiAddresses, err = s.cfg.APIAddresses(ctx); err != nil {
			return nil, status.Errorf(codes.Unavailable, "list API addresses: %v", err)
		}
	}
	if s.cfg.GossipKey != nil {
		if resp.GossipKey, err = s.cfg.GossipKey(ctx); err != nil {
			return nil, status.Errorf(codes.Unavailable, "gossip key: %v", err)
		}
	}
	if role == JoinControl {
		if s.cfg.Members == nil {
			return nil, status.Error(codes.FailedPrecondition, "this server cannot add control nodes (no store membership configured)")
		}
		// Added last: a refused or failed join above leaves the Raft
		// configuration untouched.
		info, err := s.cfg.Members.AddControlNode(ctx, id.Name, req.GetRaftAddress())
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "add %s to the store: %v", id.Name, err)
		}
		keyPEM, err := signer.KeyPEM()
		if err != nil {
			return nil, err
		}
		cj := &joinv1.ControlJoin{Voter: info.Voter, CaKeyPem: keyPEM}
		for _, m := range info.Members {
			cj.Members = append(cj.Members, &joinv1.Member{Id: m.ID, Address: m.Address, Voter: m.Voter})
		}
		resp.Control = cj
	}
	s.issued(ctx, issued)
	return resp, nil
}

// RenewCertificate implements joinv1.JoinServer: a fresh certificate with
// the caller's own identity (never wider) for a new key. Nodes, control
// nodes and users all renew this way before their certificate expires;
// an expired or revoked certificate cannot, since the call needs it.
func (s *JoinServer) RenewCertificate(ctx context.Context, req *joinv1.RenewCertificateRequest) (*joinv1.RenewCertificateResponse, error) {
	p, ok := peer.FromContext(ctx)
	var ti credentials.TLSInfo
	if ok {
		ti, ok = p.AuthInfo.(credentials.TLSInfo)
	}
	if !ok || len(ti.State.VerifiedChains) == 0 {
		return nil, status.Error(codes.Unauthenticated, "renewing a certificate needs the current, verified client certificate")
	}
	cur := ti.State.VerifiedChains[0][0]
	id, err := IdentityFromCert(cur)
	if err != nil {
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	if s.cfg.CheckRenew != nil {
		if err := s.cfg.CheckRenew(ctx, id); err != nil {
			return nil, toJoinStatus(refused(err))
		}
	}
	csr, err := ParseCSRPEM(req.GetCsrPem())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr_pem: %v", err)
	}
	kp, issued, err := s.bundle.Signer().SignCSR(csr, s.renewalOf(cur, id, remoteAddr(ctx)))
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	s.issued(ctx, issued)
	s.log.Info("certificate renewed", "identity", id.User, "remote", remoteAddr(ctx))
	return &joinv1.RenewCertificateResponse{CertificatePem: kp.CertPEM, CaBundlePem: s.bundle.PEM()}, nil
}

// GossipKeys implements joinv1.JoinServer: the gossip key ring, only to
// verified certificates of nodes and control nodes (users, admins
// included, never need the keys: `ctl gossip key list` shows fingerprints).
func (s *JoinServer) GossipKeys(ctx context.Context, _ *joinv1.GossipKeysRequest) (*joinv1.GossipKeysResponse, error) {
	p, ok := peer.FromContext(ctx)
	var ti credentials.TLSInfo
	if ok {
		ti, ok = p.AuthInfo.(credentials.TLSInfo)
	}
	if !ok || len(ti.State.VerifiedChains) == 0 {
		return nil, status.Error(codes.Unauthenticated, "the gossip keys are served to verified node certificates only")
	}
	id, err := IdentityFromCert(ti.State.VerifiedChains[0][0])
	if err != nil {
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	if id.Role != RoleNode && id.Role != RoleControl {
		return nil, status.Errorf(codes.PermissionDenied, "forbidden: %q (role %s) may not read the gossip keys: only nodes and control nodes may", id.User, id.Role)
	}
	if s.cfg.GossipKeys == nil {
		return nil, status.Error(codes.FailedPrecondition, "this cluster hands out no gossip keys")
	}
	keys, err := s.cfg.GossipKeys(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "gossip keys: %v", err)
	}
	return &joinv1.GossipKeysResponse{Keys: keys}, nil
}

func (s *JoinServer) issued(ctx context.Context, cert *x509.Certificate) {
	if s.cfg.Issued != nil {
		s.cfg.Issued(ctx, cert)
	}
}

// isTokenFailure tells a refused token from an error reading it.
func isTokenFailure(err error) bool {
	for _, e := range []error{ErrTokenInvalid, ErrTokenRevoked, ErrTokenExpired, ErrTokenRole, ErrBadToken} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// renewalOf is what a renewal of cur issues: the same identity and role
// rules as a join. Control nodes keep their names and server
// authentication; a worker keeps at most its own address (the one the
// renewal comes from), served by its stream port only; a user keeps the
// lifetime it was given, up to UserCertLifetime, so a short-lived
// certificate cannot renew itself into a long one.
func (s *JoinServer) renewalOf(cur *x509.Certificate, id Identity, remote string) IssueOptions {
	switch id.Role {
	case RoleControl:
		return IssueOptions{Identity: id, Lifetime: s.cfg.NodeCertLifetime, Server: true, Hosts: HostsOf(cur)}
	case RoleNode:
		var hosts []string
		for _, ip := range cur.IPAddresses {
			hosts = append(hosts, ownAddress(remote, ip.String())...)
		}
		return IssueOptions{Identity: id, Lifetime: s.cfg.NodeCertLifetime, Hosts: hosts, Server: len(hosts) > 0}
	}
	life := min(cur.NotAfter.Sub(cur.NotBefore)-clockSkew, s.cfg.UserCertLifetime)
	return IssueOptions{Identity: id, Lifetime: max(life, time.Minute)}
}

// ownAddress is the SAN a worker may have: the host it advertises, if
// that is an IP address and the call comes from it. Anything else (a DNS
// name, another machine's address) would be a name the worker picked.
func ownAddress(remote, advertised string) []string {
	adv, err := netip.ParseAddr(advertised)
	if err != nil {
		return nil
	}
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return nil
	}
	from, err := netip.ParseAddr(host)
	if err != nil || from.Unmap() != adv.Unmap() {
		return nil
	}
	return []string{adv.Unmap().String()}
}

type invalidError struct{ msg string }

func (e invalidError) Error() string { return e.msg }

func invalidf(format string, a ...any) error { return invalidError{fmt.Sprintf(format, a...)} }

type refusedError struct{ err error }

func (e refusedError) Error() string { return e.err.Error() }
func (e refusedError) Unwrap() error { return e.err }

func refused(err error) error { return refusedError{err} }

// joinReasons map sentinel errors to ErrorInfo reasons and back.
var joinReasons = []struct {
	err    error
	reason string
	code   codes.Code
}{
	{ErrTokenInvalid, "TOKEN_INVALID", codes.Unauthenticated},
	{ErrTokenRevoked, "TOKEN_REVOKED", codes.Unauthenticated},
	{ErrTokenExpired, "TOKEN_EXPIRED", codes.Unauthenticated},
	{ErrTokenRole, "TOKEN_ROLE", codes.PermissionDenied},
	{ErrTokenNode, "TOKEN_NODE", codes.PermissionDenied},
	{ErrNameInUse, "NAME_IN_USE", codes.AlreadyExists},
	{ErrTooManyFailures, "TOO_MANY_FAILURES", codes.ResourceExhausted},
	{ErrBadToken, "TOKEN_MALFORMED", codes.InvalidArgument},
}

func toJoinStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, r := range joinReasons {
		if errors.Is(err, r.err) {
			st, detErr := status.New(r.code, err.Error()).WithDetails(&errdetails.ErrorInfo{Reason: r.reason, Domain: errorDomain})
			if detErr != nil {
				return status.Error(r.code, err.Error())
			}
			return st.Err()
		}
	}
	var inv invalidError
	if errors.As(err, &inv) {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	var ref refusedError
	if errors.As(err, &ref) {
		if st, ok := status.FromError(ref.err); ok {
			return st.Err()
		}
		return status.Error(codes.PermissionDenied, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// fromJoinStatus turns a join error from the server back into an error
// that errors.Is the matching sentinel, keeping the server's message.
func fromJoinStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.Domain != errorDomain {
			continue
		}
		for _, r := range joinReasons {
			if r.reason == info.Reason {
				return &remoteError{sentinel: r.err, msg: st.Message()}
			}
		}
	}
	return fmt.Errorf("%s: %s", st.Code(), st.Message())
}

type remoteError struct {
	sentinel error
	msg      string
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// remoteHost is the host part of a remote address, for messages.
func remoteHost(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

func remoteAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}
