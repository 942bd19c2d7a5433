package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	joinv1 "github.com/skiffhq/skiff/proto/join/v1"
)

// assertClientOnly fails unless cert is good for client authentication
// and nothing else: no server authentication, no DNS names.
func assertClientOnly(t *testing.T, cert *x509.Certificate) {
	t.Helper()
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Fatalf("%s: extended key usage %v, want client authentication only", cert.Subject.CommonName, cert.ExtKeyUsage)
	}
	if len(cert.DNSNames) != 0 {
		t.Fatalf("%s: DNS names %v, want none", cert.Subject.CommonName, cert.DNSNames)
	}
}

// assertStreamServing: a worker certificate with its own address serves
// that address (its stream port), and names nothing else.
func assertStreamServing(t *testing.T, cert *x509.Certificate) {
	t.Helper()
	if len(cert.ExtKeyUsage) != 2 || !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Fatalf("%s: extended key usage %v, want client and server authentication", cert.Subject.CommonName, cert.ExtKeyUsage)
	}
	if len(cert.DNSNames) != 0 || len(cert.IPAddresses) != 1 {
		t.Fatalf("%s: DNS names %v, IPs %v, want one IP", cert.Subject.CommonName, cert.DNSNames, cert.IPAddresses)
	}
}

// handshakeAsServer starts a TLS listener on 127.0.0.1 presenting cert and
// answers whether a client trusting only the cluster CA completes a
// handshake with it for serverName.
func handshakeAsServer(t *testing.T, ca *CA, cert tls.Certificate, serverName string) error {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		c, err := lis.Accept()
		if err != nil {
			return
		}
		_ = c.(*tls.Conn).Handshake()
		c.Close()
	}()
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", lis.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: serverName, MinVersion: tls.VersionTLS13})
	if err == nil {
		conn.Close()
	}
	return err
}

// The issue's attack: a worker token asked for server names of its
// choice and got them with server authentication. Now the request is
// refused, and a worker certificate names at most the address the join
// came from (serving it only, for its stream port; client-only without it),
// and fails as a server certificate through a real TLS handshake for every
// other name tried.
func TestWorkerJoinGetsNoServerNames(t *testing.T) {
	ts := startJoinServer(t, newTestCA(t))
	ctx := context.Background()
	c := newJoinClient()
	picked := []string{"127.0.0.77", "api.example.com", "10.96.0.1", "localhost", "127.0.0.1"}
	_, err := c.Join(ctx, JoinRequest{Address: ts.addr, Token: ts.token(t, JoinWorker), Role: JoinWorker, NodeName: "w1",
		AdvertiseAddress: "127.0.0.1:7445", ExtraSANs: picked})
	if err == nil || !strings.Contains(err.Error(), "InvalidArgument") || !strings.Contains(err.Error(), "extra_sans") {
		t.Fatalf("worker join with extra SANs: %v, want InvalidArgument naming extra_sans", err)
	}
	t.Logf("extra SANs refused with: %v", err)

	for _, tc := range []struct {
		advertise string
		wantIPs   []string
	}{
		{"127.0.0.1:7445", []string{"127.0.0.1"}}, // the join comes from it: its own
		{"10.96.0.1:7445", nil},                   // a Service address, not where the join comes from
		{"127.0.0.77:7445", nil},                  // another machine's
		{"api.example.com:7445", nil},             // a name it picked
	} {
		res, err := c.Join(ctx, JoinRequest{Address: ts.addr, Token: ts.token(t, JoinWorker), Role: JoinWorker, NodeName: "w1", AdvertiseAddress: tc.advertise})
		if err != nil {
			t.Fatalf("join advertising %s: %v", tc.advertise, err)
		}
		if tc.wantIPs == nil {
			assertClientOnly(t, res.Cert)
		} else {
			assertStreamServing(t, res.Cert)
		}
		var ips []string
		for _, ip := range res.Cert.IPAddresses {
			ips = append(ips, ip.String())
		}
		if fmt.Sprint(ips) != fmt.Sprint(tc.wantIPs) {
			t.Fatalf("advertising %s: IP SANs %v, want %v", tc.advertise, ips, tc.wantIPs)
		}
		cert, err := res.KeyPair.TLS()
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range picked {
			if slices.Contains(tc.wantIPs, name) {
				continue // its own address: its stream port's (TestWorkerServingCertificateOnlyForItsStreamPort)
			}
			if err := handshakeAsServer(t, ts.ca, cert, name); err == nil {
				t.Fatalf("advertising %s: a TLS client trusting the CA accepted the worker certificate as server %s", tc.advertise, name)
			}
		}
		if _, err := res.Cert.Verify(x509.VerifyOptions{Roots: ts.ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil && tc.wantIPs == nil {
			t.Fatalf("advertising %s: the worker certificate verifies for server authentication", tc.advertise)
		}
	}

	// Control certificates as before: server authentication with their names.
	res, err := c.Join(ctx, JoinRequest{Address: ts.addr, Token: ts.token(t, JoinControl), Role: JoinControl, NodeName: "c2",
		AdvertiseAddress: "127.0.0.1:7443", RaftAddress: "127.0.0.1:7444", ExtraSANs: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := res.KeyPair.TLS()
	if err := handshakeAsServer(t, ts.ca, cert, "localhost"); err != nil {
		t.Fatalf("control certificate as server: %v", err)
	}
}

// A worker certificate issued before this rule (server authentication,
// loopback and picked names) keeps only its own address at its next renewal.
func TestWorkerRenewalDropsServerNames(t *testing.T) {
	ts := startJoinServer(t, newTestCA(t))
	id, _ := NodeIdentity("w1")
	kp, _, err := ts.ca.Issue(IssueOptions{Identity: id, Server: true, Hosts: []string{"127.0.0.1", "127.0.0.77", "localhost", "api.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	old, _ := kp.TLS()
	key, _ := NewKey()
	next, err := newJoinClient().Renew(context.Background(), ts.addr, ts.ca.Pool(), StaticCert{old}, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := next.TLS()
	assertStreamServing(t, cert.Leaf)
	if len(cert.Leaf.IPAddresses) != 1 || cert.Leaf.IPAddresses[0].String() != "127.0.0.1" {
		t.Fatalf("renewed worker IP SANs %v, want only 127.0.0.1 (where the renewal came from)", cert.Leaf.IPAddresses)
	}
}

// A join under a name CheckJoin reports in use is refused with a message
// that says what to do; a token bound to that name (`ctl token create
// --node`) gets through, and only for that name.
func TestJoinNameInUseNeedsNodeBoundToken(t *testing.T) {
	ts := startJoinServer(t, newTestCA(t), func(c *JoinServerConfig) {
		c.CheckJoin = func(_ context.Context, id Identity) error {
			if id.Name == "w1" {
				return fmt.Errorf("%w: node %q heartbeat 1s ago", ErrNameInUse, id.Name)
			}
			return nil
		}
	})
	ctx := context.Background()
	c := newJoinClient()
	req := func(tok Token, name string) JoinRequest {
		return JoinRequest{Address: ts.addr, Token: tok, Role: JoinWorker, NodeName: name, AdvertiseAddress: "127.0.0.1:7445"}
	}
	if _, err := c.Join(ctx, req(ts.token(t, JoinWorker), "w1")); !errors.Is(err, ErrNameInUse) {
		t.Fatalf("join under a live name with a plain token: %v, want ErrNameInUse", err)
	}
	bound, _, err := ts.tokens.Create(ctx, CreateTokenOptions{Role: JoinWorker, TTL: time.Hour, Node: "w1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Join(ctx, req(bound, "w2")); !errors.Is(err, ErrTokenNode) || !strings.Contains(err.Error(), `may only join node "w1"`) {
		t.Fatalf("node-bound token under another name: %v, want ErrTokenNode", err)
	}
	res, err := c.Join(ctx, req(bound, "w1"))
	if err != nil {
		t.Fatalf("re-join with a token bound to w1: %v", err)
	}
	if res.Identity.User != "node:w1" {
		t.Fatalf("identity %s", res.Identity.User)
	}
	if _, _, err := ts.tokens.Create(ctx, CreateTokenOptions{Role: JoinControl, Node: "c1"}); !errors.Is(err, ErrBadToken) {
		t.Fatalf("node-bound control token: %v, want ErrBadToken", err)
	}
	if _, _, err := ts.tokens.Create(ctx, CreateTokenOptions{Role: JoinWorker, Node: "W_1"}); !errors.Is(err, ErrBadToken) {
		t.Fatalf("node-bound token with a bad name: %v, want ErrBadToken", err)
	}
}

// An unknown token id and a wrong secret for a real id are answered with
// the same status: code, message and details, byte for byte.
func TestJoinUnknownIDAndWrongSecretIdentical(t *testing.T) {
	ts := startJoinServer(t, newTestCA(t))
	tok := ts.token(t, JoinWorker)
	conn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(credentials.NewTLS(ClientTLSConfig(ts.ca.Pool(), nil, "127.0.0.1"))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	key, _ := NewKey()
	csr, _ := NewCSR(key, "node:w1")
	join := func(id, secret string) *status.Status {
		_, err := joinv1.NewJoinClient(conn).Join(context.Background(), &joinv1.JoinRequest{TokenId: id, TokenSecret: secret, CsrPem: csr,
			Role: joinv1.Role_ROLE_WORKER, NodeName: "w1", AdvertiseAddress: "127.0.0.1:7445"})
		return status.Convert(err)
	}
	wrongSecret := join(tok.ID, strings.Repeat("b", tokenSecretLen))
	unknown := join("zzzzzz", tok.Secret)
	if wrongSecret.Code() != codes.Unauthenticated || !proto.Equal(wrongSecret.Proto(), unknown.Proto()) {
		t.Fatalf("answers differ:\nwrong secret: %v\nunknown id:   %v", wrongSecret.Proto(), unknown.Proto())
	}
	t.Logf("both answered: %s %q", wrongSecret.Code(), wrongSecret.Message())
}

// Failed joins from one address are refused with ResourceExhausted once
// its budget is spent, even with a valid token, while another address is
// served; the count of refusals proves it (no timing).
func TestJoinFailuresSlowedPerAddress(t *testing.T) {
	const burst = 3
	ts := startJoinServer(t, newTestCA(t), func(c *JoinServerConfig) {
		c.FailureLimit = FailureLimitConfig{Burst: burst, Refill: time.Hour, MaxAddresses: 16}
	})
	ctx := context.Background()
	from := func(ip string) *JoinClient {
		cfg := DefaultJoinClientConfig()
		cfg.Timeout = 10 * time.Second
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		cfg.DialOptions = []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		})}
		return NewJoinClient(cfg)
	}
	good := ts.token(t, JoinWorker)
	bad := good
	bad.Secret = strings.Repeat("c", tokenSecretLen)
	req := func(tok Token, adv string) JoinRequest {
		return JoinRequest{Address: ts.addr, Token: tok, Role: JoinWorker, NodeName: "w1", AdvertiseAddress: adv}
	}
	guesser := from("127.0.0.1")
	invalid, exhausted := 0, 0
	for range 20 {
		_, err := guesser.Join(ctx, req(bad, "127.0.0.1:7445"))
		switch {
		case errors.Is(err, ErrTokenInvalid):
			invalid++
		case errors.Is(err, ErrTooManyFailures):
			exhausted++
			if !strings.Contains(err.Error(), "127.0.0.1") || !strings.Contains(err.Error(), "next attempt") {
				t.Fatalf("refusal %v does not say why", err)
			}
		default:
			t.Fatalf("guess: %v", err)
		}
	}
	if invalid != burst || exhausted != 20-burst {
		t.Fatalf("20 wrong guesses: %d answered, %d refused; want %d and %d", invalid, exhausted, burst, 20-burst)
	}
	if _, err := guesser.Join(ctx, req(good, "127.0.0.1:7445")); !errors.Is(err, ErrTooManyFailures) {
		t.Fatalf("valid token from the slowed address: %v, want ErrTooManyFailures", err)
	}
	// On the wire it is ResourceExhausted.
	conn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(credentials.NewTLS(ClientTLSConfig(ts.ca.Pool(), nil, "127.0.0.1"))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = joinv1.NewJoinClient(conn).Join(ctx, &joinv1.JoinRequest{TokenId: good.ID, TokenSecret: good.Secret, Role: joinv1.Role_ROLE_WORKER})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("raw join from the slowed address: %v, want ResourceExhausted", err)
	}
	// Another address is not affected.
	if _, err := from("127.0.0.2").Join(ctx, req(good, "127.0.0.2:7445")); err != nil {
		t.Fatalf("join from another address: %v", err)
	}
}

// Memory stays bounded when failures come from many addresses: beyond
// MaxAddresses they share one bucket, which is then slowed too.
func TestFailureLimiterBounded(t *testing.T) {
	now := time.Now()
	l := newFailureLimiter(FailureLimitConfig{Burst: 2, Refill: time.Hour, MaxAddresses: 8}, func() time.Time { return now })
	for i := range 1000 {
		l.fail(fmt.Sprintf("10.1.%d.%d:5000", i/250, i%250))
	}
	if n := l.tracked(); n > 8+1 {
		t.Fatalf("%d buckets, want at most 8 addresses + the shared one", n)
	}
	if l.wait("10.9.9.9:1") == 0 {
		t.Fatal("a new address beyond the table is not slowed though the shared bucket is spent")
	}
	// Budgets refill; full ones are forgotten to make room.
	now = now.Add(3 * time.Hour)
	if l.wait("10.1.0.0:1") != 0 {
		t.Fatal("budget did not refill")
	}
	l.fail("10.200.0.1:1")
	if n := l.tracked(); n != 1 {
		t.Fatalf("after refill %d addresses tracked, want 1 (the full ones dropped)", n)
	}
	// IPv6: one /64 is one machine.
	l.fail("[2001:db8::1]:1")
	l.fail("[2001:db8::2]:1")
	if l.wait("[2001:db8::3]:1") == 0 {
		t.Fatal("two failures from one /64 did not spend its budget of 2")
	}
}

// User certificates renew with the current certificate: same identity
// and role, client-only, and no longer than they were issued for (a
// short-lived certificate cannot renew itself into a long one).
func TestUserRenewalKeepsLifetime(t *testing.T) {
	ts := startJoinServer(t, newTestCA(t))
	c := newJoinClient()
	viewer, _ := UserIdentity("bob", RoleViewer)
	for _, tc := range []struct {
		life, want time.Duration
	}{
		{0, DefaultUserCertLifetime},
		{time.Hour, time.Hour},
	} {
		kp, cert, err := ts.ca.Issue(IssueOptions{Identity: viewer, Lifetime: tc.life})
		if err != nil {
			t.Fatal(err)
		}
		if tc.life == 0 && cert.NotAfter.Sub(cert.NotBefore) != 90*24*time.Hour+clockSkew {
			t.Fatalf("default user certificate lives %s, want 90 days (+%s back-dating)", cert.NotAfter.Sub(cert.NotBefore), clockSkew)
		}
		cur, _ := kp.TLS()
		key, _ := NewKey()
		next, err := c.Renew(context.Background(), ts.addr, ts.ca.Pool(), StaticCert{cur}, key)
		if err != nil {
			t.Fatalf("renew %s: %v", viewer, err)
		}
		renewed, _ := next.TLS()
		assertClientOnly(t, renewed.Leaf)
		id, _ := IdentityFromCert(renewed.Leaf)
		if id != viewer {
			t.Fatalf("renewed as %s", id)
		}
		if got := renewed.Leaf.NotAfter.Sub(renewed.Leaf.NotBefore) - clockSkew; got != tc.want {
			t.Fatalf("issued for %s, renewed for %s, want %s", tc.life, got, tc.want)
		}
	}
}
