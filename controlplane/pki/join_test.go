package pki

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	joinv1 "github.com/skiffhq/skiff/proto/join/v1"
)

// recorder sees every RPC the server receives: which method, on which
// side of the split listener, and whether the request carried a secret.
type recorder struct {
	mu     sync.Mutex
	calls  []string
	secret []byte
	leaked bool
}

func (r *recorder) interceptor(side string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		r.mu.Lock()
		r.calls = append(r.calls, side+" "+info.FullMethod)
		if m, ok := req.(proto.Message); ok && len(r.secret) > 0 {
			b, _ := proto.Marshal(m)
			if bytes.Contains(b, r.secret) {
				r.leaked = true
			}
		}
		r.mu.Unlock()
		return h(ctx, req)
	}
}

func (r *recorder) snapshot() ([]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...), r.leaked
}

type fakeMembers struct {
	mu    sync.Mutex
	added []string
}

func (f *fakeMembers) AddControlNode(_ context.Context, id, addr string) (ControlJoinInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.added = append(f.added, id+"@"+addr)
	return ControlJoinInfo{Voter: true, Members: []Member{{ID: "c1", Address: "127.0.0.1:7444", Voter: true}, {ID: id, Address: addr, Voter: true}}}, nil
}

type testServer struct {
	ca      *CA
	tokens  *Tokens
	clock   *fakeNow
	addr    string
	rec     *recorder
	members *fakeMembers
	// serverCert is the server's own certificate (control:c1).
	serverCert tls.Certificate
}

// startJoinServer serves the join service the way the control plane
// should: one port, a SplitListener, an anonymous gRPC server with only
// the join service and an authenticated one with join + health (standing
// in for the API).
func startJoinServer(t *testing.T, ca *CA, tune ...func(*JoinServerConfig)) *testServer {
	t.Helper()
	clock := &fakeNow{t: time.Now()}
	cfg := DefaultTokensConfig()
	cfg.Pin, cfg.Now = ca.Pin(), clock.now
	tokens, err := NewTokens(NewMemoryTokenStore(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := ControlIdentity("c1")
	kp, _, err := ca.Issue(IssueOptions{Identity: id, Server: true, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := kp.TLS()
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{ca: ca, tokens: tokens, clock: clock, rec: &recorder{}, members: &fakeMembers{}, serverCert: cert}
	jcfg := DefaultJoinServerConfig()
	jcfg.CA, jcfg.Tokens, jcfg.Members = ca, tokens, ts.members
	jcfg.APIAddresses = func(context.Context) ([]string, error) { return []string{ts.addr}, nil }
	for _, f := range tune {
		f(&jcfg)
	}
	js, err := NewJoinServer(jcfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = lis.Addr().String()
	split, err := NewSplitListener(lis, ServerTLSConfig(ca.Pool(), StaticCert{cert}, tls.VerifyClientCertIfGiven), nil)
	if err != nil {
		t.Fatal(err)
	}
	anon := grpc.NewServer(grpc.Creds(HandshakenTLS()), grpc.UnaryInterceptor(ts.rec.interceptor("anonymous")))
	joinv1.RegisterJoinServer(anon, js)
	authed := grpc.NewServer(grpc.Creds(HandshakenTLS()), grpc.UnaryInterceptor(ts.rec.interceptor("authenticated")))
	joinv1.RegisterJoinServer(authed, js)
	healthpb.RegisterHealthServer(authed, health.NewServer())
	errs := make(chan error, 2)
	go func() { errs <- anon.Serve(split.Anonymous()) }()
	go func() { errs <- authed.Serve(split.Authenticated()) }()
	t.Cleanup(func() {
		anon.Stop()
		authed.Stop()
		split.Close()
		for range 2 {
			if err := <-errs; err != nil && !errors.Is(err, net.ErrClosed) {
				t.Errorf("serve: %v", err)
			}
		}
	})
	return ts
}

func newJoinClient() *JoinClient {
	cfg := DefaultJoinClientConfig()
	cfg.Timeout = 10 * time.Second
	return NewJoinClient(cfg)
}

func (ts *testServer) token(t *testing.T, role JoinRole) Token {
	t.Helper()
	tok, _, err := ts.tokens.Create(context.Background(), CreateTokenOptions{Role: role, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ts.rec.mu.Lock()
	ts.rec.secret = []byte(tok.Secret)
	ts.rec.mu.Unlock()
	return tok
}

func TestJoinWorkerThenRenew(t *testing.T) {
	ts := startJoinServer(t, newTestCA(t))
	tok := ts.token(t, JoinWorker)
	ctx := context.Background()
	c := newJoinClient()
	// The join comes from 127.0.0.1, so that advertise address is the
	// node's own and goes into the certificate.
	res, err := c.Join(ctx, JoinRequest{Address: ts.addr, Token: tok, Role: JoinWorker, NodeName: "w1", AdvertiseAddress: "127.0.0.1:7445"})
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	if res.Identity.User != "node:w1" || res.Control != nil || len(res.APIAddresses) != 1 || res.CA.Equal(ts.ca.Cert) != true {
		t.Fatalf("result %+v", res)
	}
	if len(res.Cert.IPAddresses) != 1 || res.Cert.IPAddresses[0].String() != "127.0.0.1" || len(res.Cert.DNSNames) != 0 {
		t.Fatalf("SANs %v %v", res.Cert.IPAddresses, res.Cert.DNSNames)
	}
	assertStreamServing(t, res.Cert) // its own address: it serves its stream port there

	calls, _ := ts.rec.snapshot()
	want := []string{"anonymous /skiff.join.v1.Join/GetCA", "anonymous /skiff.join.v1.Join/Join"}
	if strings.Join(calls, ",") != strings.Join(want, ",") {
		t.Fatalf("calls %v, want %v", calls, want)
	}

	// Renew over mutual TLS with the joined certificate.
	cert, err := res.KeyPair.TLS()
	if err != nil {
		t.Fatal(err)
	}
	newKey, _ := NewKey()
	kp, err := c.Renew(ctx, ts.addr, ts.ca.Pool(), StaticCert{cert}, newKey)
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	renewed, err := kp.TLS()
	if err != nil {
		t.Fatal(err)
	}
	if renewed.Leaf.SerialNumber.Cmp(cert.Leaf.SerialNumber) == 0 || renewed.Leaf.Subject.CommonName != "node:w1" ||
		len(renewed.Leaf.IPAddresses) != 1 || !renewed.Leaf.IPAddresses[0].Equal(cert.Leaf.IPAddresses[0]) {
		t.Fatalf("renewed cert %v %v", renewed.Leaf.Subject, renewed.Leaf.IPAddresses)
	}
	assertStreamServing(t, renewed.Leaf)
	calls, _ = ts.rec.snapshot()
	if calls[len(calls)-1] != "authenticated /skiff.join.v1.Join/RenewCertificate" {
		t.Fatalf("renew went to %q", calls[len(calls)-1])
	}
}

func TestJoinControlGetsStoreInfoAndCAKey(t *testing.T) {
	ts := startJoinServer(t, newTestCA(t))
	tok := ts.token(t, JoinControl)
	res, err := newJoinClient().Join(context.Background(), JoinRequest{Address: ts.addr, Token: tok, Role: JoinControl,
		NodeName: "c2", AdvertiseAddress: "127.0.0.2:7443", RaftAddress: "127.0.0.2:7444"})
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	if res.Identity.User != "control:c2" || res.Control == nil || !res.Control.Voter || len(res.Control.Members) != 2 {
		t.Fatalf("result %+v", res)
	}
	ca, err := ParseCA(res.CABundlePEM, res.Control.CAKeyPEM)
	if err != nil || !ca.Key.Equal(ts.ca.Key) {
		t.Fatalf("CA key: %v", err)
	}
	if got := strings.Join(ts.members.added, ","); got != "c2@127.0.0.2:7444" {
		t.Fatalf("members added %q", got)
	}
}

// The required proof: with a token whose pin does not match the server's
// CA, the client stops after GetCA; Join is never called and no request
// the server received contained the secret.
func TestJoinWrongPinNeverSendsSecret(t *testing.T) {
	ts := startJoinServer(t, newTestCA(t))
	tok := ts.token(t, JoinWorker)
	tok.Pin = newTestCA(t).Pin()
	_, err := newJoinClient().Join(context.Background(), JoinRequest{Address: ts.addr, Token: tok, Role: JoinWorker, NodeName: "w1", AdvertiseAddress: "10.0.0.5:7445"})
	if !errors.Is(err, ErrPinMismatch) || !strings.Contains(err.Error(), "nothing secret was sent") {
		t.Fatalf("err %v, want ErrPinMismatch", err)
	}
	calls, leaked := ts.rec.snapshot()
	if len(calls) != 1 || calls[0] != "anonymous /skiff.join.v1.Join/GetCA" || leaked {
		t.Fatalf("server saw %v (secret leaked: %v); want only GetCA", calls, leaked)
	}
}

// An impostor at the address (its own CA) learns nothing: the real
// token's pin does not match its CA.
func TestJoinImpostorServerNeverGetsSecret(t *testing.T) {
	real := startJoinServer(t, newTestCA(t))
	tok := real.token(t, JoinWorker)
	impostor := startJoinServer(t, newTestCA(t))
	impostor.rec.secret = []byte(tok.Secret)
	_, err := newJoinClient().Join(context.Background(), JoinRequest{Address: impostor.addr, Token: tok, Role: JoinWorker, NodeName: "w1", AdvertiseAddress: "10.0.0.5:7445"})
	if !errors.Is(err, ErrPinMismatch) {
		t.Fatalf("err %v, want ErrPinMismatch", err)
	}
	calls, leaked := impostor.rec.snapshot()
	if len(calls) != 1 || leaked {
		t.Fatalf("impostor saw %v (secret leaked: %v)", calls, leaked)
	}
}

func TestJoinRefusals(t *testing.T) {
	ts := startJoinServer(t, newTestCA(t))
	ctx := context.Background()
	c := newJoinClient()
	worker := ts.token(t, JoinWorker)
	revoked := ts.token(t, JoinWorker)
	if err := ts.tokens.Revoke(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	expiring, _, _ := ts.tokens.Create(ctx, CreateTokenOptions{Role: JoinWorker, TTL: time.Minute})
	wrongSecret := worker
	wrongSecret.Secret = strings.Repeat("b", tokenSecretLen)
	unknown := worker
	unknown.ID = "zzzzzz"
	req := func(tok Token, role JoinRole, name string) JoinRequest {
		return JoinRequest{Address: ts.addr, Token: tok, Role: role, NodeName: name, AdvertiseAddress: "10.0.0.5:7445", RaftAddress: "10.0.0.5:7444"}
	}
	cases := []struct {
		name    string
		req     JoinRequest
		advance time.Duration
		want    error
		code    codes.Code
		msg     string
	}{
		{"revoked", req(revoked, JoinWorker, "w1"), 0, ErrTokenRevoked, 0, "was revoked at"},
		{"expired", req(expiring, JoinWorker, "w1"), 2 * time.Minute, ErrTokenExpired, 0, "expired at"},
		{"unknown", req(unknown, JoinWorker, "w1"), 0, ErrTokenInvalid, 0, "unknown token id or wrong secret"},
		{"wrong secret", req(wrongSecret, JoinWorker, "w1"), 0, ErrTokenInvalid, 0, "unknown token id or wrong secret"},
		{"worker token as control", req(worker, JoinControl, "c9"), 0, ErrTokenRole, 0, "is a worker token"},
		{"bad advertise", JoinRequest{Address: ts.addr, Token: worker, Role: JoinWorker, NodeName: "w1", AdvertiseAddress: "nope"}, 0, nil, codes.InvalidArgument, `advertise_address "nope"`},
	}
	for _, tc := range cases {
		ts.clock.t = time.Now().Add(tc.advance)
		_, err := c.Join(ctx, tc.req)
		if tc.want != nil && (!errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg)) {
			t.Errorf("%s: %v, want %v with %q", tc.name, err, tc.want, tc.msg)
		}
		if tc.want == nil && (err == nil || !strings.Contains(err.Error(), tc.code.String()) || !strings.Contains(err.Error(), tc.msg)) {
			t.Errorf("%s: %v, want %s with %q", tc.name, err, tc.code, tc.msg)
		}
	}
	if len(ts.members.added) != 0 {
		t.Fatalf("refused joins touched membership: %v", ts.members.added)
	}
	// A bad node name is refused by the client before anything is sent.
	if _, err := c.Join(ctx, req(worker, JoinWorker, "W1")); !errors.Is(err, ErrBadIdentity) {
		t.Errorf("bad name: %v", err)
	}
}

func TestSplitListenerRouting(t *testing.T) {
	ts := startJoinServer(t, newTestCA(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call := func(cfg *tls.Config) error {
		conn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	// No client certificate: the API side is out of reach.
	err := call(ClientTLSConfig(ts.ca.Pool(), nil, "127.0.0.1"))
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("anonymous health check: %v, want Unimplemented (served only on the authenticated side)", err)
	}
	// A certificate from another CA: refused in the handshake.
	other := newTestCA(t)
	kp, _, _ := other.Issue(IssueOptions{Identity: AdminIdentity()})
	foreign, _ := kp.TLS()
	err = call(ClientTLSConfig(ts.ca.Pool(), StaticCert{foreign}, "127.0.0.1"))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("foreign cert: %v, want a TLS certificate failure", err)
	}
	t.Logf("foreign certificate refused with: %v", err)
	// A certificate of this cluster: served.
	kp, _, _ = ts.ca.Issue(IssueOptions{Identity: AdminIdentity()})
	admin, _ := kp.TLS()
	if err := call(ClientTLSConfig(ts.ca.Pool(), StaticCert{admin}, "127.0.0.1")); err != nil {
		t.Fatalf("admin health check: %v", err)
	}
	calls, _ := ts.rec.snapshot()
	// (Unknown services are refused before interceptors run, so the
	// anonymous attempt leaves no trace.)
	if len(calls) != 1 || calls[0] != "authenticated /grpc.health.v1.Health/Check" {
		t.Fatalf("calls %v", calls)
	}

	// RenewCertificate: anonymous callers are refused.
	key, _ := NewKey()
	csr, _ := NewCSR(key, "admin")
	anonConn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(credentials.NewTLS(ClientTLSConfig(ts.ca.Pool(), nil, "127.0.0.1"))))
	if err != nil {
		t.Fatal(err)
	}
	defer anonConn.Close()
	_, err = joinv1.NewJoinClient(anonConn).RenewCertificate(ctx, &joinv1.RenewCertificateRequest{CsrPem: csr})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("anonymous renew: %v", err)
	}
}

func TestSplitListenerRequiresOptionalClientAuth(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	ca := newTestCA(t)
	if _, err := NewSplitListener(lis, ServerTLSConfig(ca.Pool(), StaticCert{}, tls.RequireAndVerifyClientCert), nil); err == nil {
		t.Fatal("a config that requires client certs makes the anonymous side unreachable; must be refused")
	}
}

// A client that connects and never speaks must not hold up others: each
// handshake runs on its own and is bounded by HandshakeTimeout.
func TestSplitListenerSlowClientDoesNotBlock(t *testing.T) {
	ts := startJoinServer(t, newTestCA(t))
	idle, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	tok := ts.token(t, JoinWorker)
	if _, err := newJoinClient().Join(context.Background(), JoinRequest{Address: ts.addr, Token: tok, Role: JoinWorker, NodeName: "w1", AdvertiseAddress: "10.0.0.5:7445"}); err != nil {
		t.Fatalf("Join beside an idle connection: %v", err)
	}
}
