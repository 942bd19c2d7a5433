package pki

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	joinv1 "github.com/skiffhq/skiff/proto/join/v1"
)

// ErrPinMismatch means the server's CA is not the one the token pins:
// the address belongs to another cluster, or someone is in the middle.
var ErrPinMismatch = errors.New("cluster CA does not match the token's pin")

// JoinClientConfig configures a JoinClient.
type JoinClientConfig struct {
	// Timeout bounds each step (fetch CA, join, renew).
	Timeout time.Duration
	// DialOptions are added to every dial (tests: a custom dialer).
	DialOptions []grpc.DialOption
	Logger      *slog.Logger
}

// DefaultJoinClientConfig: 30 s per step.
func DefaultJoinClientConfig() JoinClientConfig {
	return JoinClientConfig{Timeout: 30 * time.Second, Logger: slog.Default()}
}

// JoinClient is the joining side of the handshake.
type JoinClient struct {
	cfg JoinClientConfig
}

// NewJoinClient returns a client.
func NewJoinClient(cfg JoinClientConfig) *JoinClient {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultJoinClientConfig().Timeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &JoinClient{cfg: cfg}
}

// JoinRequest says what the node wants to become.
type JoinRequest struct {
	// Address is host:port of any control node's API port.
	Address string
	// Token is the whole token (pin, id, secret).
	Token Token
	Role  JoinRole
	// NodeName is the node's name (control node id for control nodes).
	NodeName string
	// AdvertiseAddress is host:port where this node serves.
	AdvertiseAddress string
	// RaftAddress is host:port of a control node's store port.
	RaftAddress string
	ExtraSANs   []string
	// Key is the node's private key; nil generates one.
	Key *ecdsa.PrivateKey
}

// JoinResult is what a successful join gives the node. Save KeyPair and
// CABundlePEM in the data dir before starting anything.
type JoinResult struct {
	Identity     Identity
	KeyPair      KeyPair
	Cert         *x509.Certificate
	CA           *x509.Certificate
	CABundlePEM  []byte
	APIAddresses []string
	GossipKey    []byte
	// Control is set for control joins.
	Control *ControlJoinResult
}

// ControlJoinResult is the store information of a control join.
type ControlJoinResult struct {
	ControlJoinInfo
	// CAKeyPEM lets the new control node sign joins and renewals.
	CAKeyPEM []byte
}

// FetchCA asks addr for the cluster CA over TLS that does NOT verify the
// server (we do not know the CA yet) and accepts it only if a CA in the
// bundle has the public-key hash pin. Nothing secret is sent on this
// connection. The returned certificate is the pinned CA.
func (c *JoinClient) FetchCA(ctx context.Context, addr, pin string) (*x509.Certificate, []byte, error) {
	if err := checkPin(pin); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	// InsecureSkipVerify is deliberate and confined to this one call: the
	// pin check below is the verification, and this connection carries no
	// secret and no client certificate.
	insecure := credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}) // #nosec G402 -- pinned below
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure)}, c.cfg.DialOptions...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch CA from %s: %w", addr, err)
	}
	defer conn.Close()
	resp, err := joinv1.NewJoinClient(conn).GetCA(ctx, &joinv1.GetCARequest{})
	if err != nil {
		return nil, nil, fmt.Errorf("fetch CA from %s: %w", addr, err)
	}
	certs, err := ParseCertificatesPEM(resp.GetCaBundlePem())
	if err != nil {
		return nil, nil, fmt.Errorf("CA from %s: %w", addr, err)
	}
	var got []string
	for _, cert := range certs {
		p := PinOf(cert)
		if p == pin && cert.IsCA {
			return cert, resp.GetCaBundlePem(), nil
		}
		got = append(got, p)
	}
	return nil, nil, fmt.Errorf("%w: %s serves a CA with public-key hash %v, the token expects %s; "+
		"this is not the cluster the token was made for, or the connection is intercepted (nothing secret was sent)",
		ErrPinMismatch, addr, got, pin)
}

// Join runs the handshake: fetch and pin-check the CA, then re-dial
// verifying the server against that CA, and only then send the token
// secret and a CSR.
func (c *JoinClient) Join(ctx context.Context, req JoinRequest) (*JoinResult, error) {
	var role joinv1.Role
	var want Identity
	var err error
	switch req.Role {
	case JoinControl:
		role = joinv1.Role_ROLE_CONTROL
		want, err = ControlIdentity(req.NodeName)
	case JoinWorker:
		role = joinv1.Role_ROLE_WORKER
		want, err = NodeIdentity(req.NodeName)
	default:
		return nil, fmt.Errorf("%w: role %q: want %q or %q", ErrBadToken, req.Role, JoinControl, JoinWorker)
	}
	if err != nil {
		return nil, err
	}
	ca, bundle, err := c.FetchCA(ctx, req.Address, req.Token.Pin)
	if err != nil {
		return nil, err
	}
	key := req.Key
	if key == nil {
		if key, err = NewKey(); err != nil {
			return nil, err
		}
	}
	csrPEM, err := NewCSR(key, want.User)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	conn, err := c.dialVerified(req.Address, pool, nil)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	resp, err := joinv1.NewJoinClient(conn).Join(ctx, &joinv1.JoinRequest{
		TokenId: req.Token.ID, TokenSecret: req.Token.Secret, CsrPem: csrPEM, Role: role,
		NodeName: req.NodeName, AdvertiseAddress: req.AdvertiseAddress, RaftAddress: req.RaftAddress, ExtraSans: req.ExtraSANs,
	})
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", req.Address, fromJoinStatus(err))
	}
	cert, err := checkIssued(resp.GetCertificatePem(), key, pool, want)
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", req.Address, err)
	}
	keyPEM, err := EncodeECPrivateKeyPEM(key)
	if err != nil {
		return nil, err
	}
	res := &JoinResult{Identity: want, KeyPair: KeyPair{CertPEM: resp.GetCertificatePem(), KeyPEM: keyPEM}, Cert: cert,
		CA: ca, CABundlePEM: bundle, APIAddresses: resp.GetApiAddresses(), GossipKey: resp.GetGossipKey()}
	if req.Role == JoinControl {
		cj := resp.GetControl()
		if cj == nil {
			return nil, fmt.Errorf("join %s: the server sent no store information for a control join", req.Address)
		}
		if _, err := ParseCA(encodeCertPEM(ca.Raw), cj.GetCaKeyPem()); err != nil {
			return nil, fmt.Errorf("join %s: CA key from the server: %w", req.Address, err)
		}
		out := &ControlJoinResult{ControlJoinInfo: ControlJoinInfo{Voter: cj.GetVoter()}, CAKeyPEM: cj.GetCaKeyPem()}
		for _, m := range cj.GetMembers() {
			out.Members = append(out.Members, Member{ID: m.GetId(), Address: m.GetAddress(), Voter: m.GetVoter()})
		}
		res.Control = out
	}
	c.cfg.Logger.Info("joined cluster", "address", req.Address, "identity", want.User)
	return res, nil
}

// Renew asks addr for a new certificate for key, authenticating with the
// current certificate src hands out. Use it as a Renewer's callback on
// worker nodes (control nodes hold the CA key and can sign locally).
func (c *JoinClient) Renew(ctx context.Context, addr string, roots *x509.CertPool, src CertSource, key *ecdsa.PrivateKey) (KeyPair, error) {
	kp, _, err := c.RenewWithCAs(ctx, addr, roots, src, key)
	return kp, err
}

// RenewWithCAs is Renew that also returns the CAs the cluster trusts now
// (PEM, the signer first), which the caller should trust from now on:
// during a CA rotation the new certificate comes from the new CA, and after
// it the control nodes serve with it. The list is believed because it comes
// from a control node verified against roots; the new certificate is
// checked against it.
func (c *JoinClient) RenewWithCAs(ctx context.Context, addr string, roots *x509.CertPool, src CertSource, key *ecdsa.PrivateKey) (KeyPair, []byte, error) {
	current, err := src.GetClientCertificate(nil)
	if err != nil || current == nil || current.Leaf == nil {
		return KeyPair{}, nil, fmt.Errorf("renew: no current certificate (with Leaf) to authenticate with: %v", err)
	}
	want, err := IdentityFromCert(current.Leaf)
	if err != nil {
		return KeyPair{}, nil, fmt.Errorf("renew: %w", err)
	}
	csrPEM, err := NewCSR(key, want.User)
	if err != nil {
		return KeyPair{}, nil, err
	}
	conn, err := c.dialVerified(addr, roots, src)
	if err != nil {
		return KeyPair{}, nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	resp, err := joinv1.NewJoinClient(conn).RenewCertificate(ctx, &joinv1.RenewCertificateRequest{CsrPem: csrPEM})
	if err != nil {
		return KeyPair{}, nil, fmt.Errorf("renew at %s: %w", addr, fromJoinStatus(err))
	}
	issuers := roots
	if cas, err := ParseCertificatesPEM(resp.GetCaBundlePem()); err == nil {
		issuers = x509.NewCertPool()
		for _, ca := range cas {
			issuers.AddCert(ca)
		}
	}
	if _, err := checkIssued(resp.GetCertificatePem(), key, issuers, want); err != nil {
		return KeyPair{}, nil, fmt.Errorf("renew at %s: %w", addr, err)
	}
	keyPEM, err := EncodeECPrivateKeyPEM(key)
	if err != nil {
		return KeyPair{}, nil, err
	}
	return KeyPair{CertPEM: resp.GetCertificatePem(), KeyPEM: keyPEM}, resp.GetCaBundlePem(), nil
}

// TrustedCAs asks addr, over a connection verified against roots and
// authenticated with src, for the CAs the cluster trusts now (PEM, the
// signer first). A worker polls it to notice a CA rotation and renew
// before it finishes.
func (c *JoinClient) TrustedCAs(ctx context.Context, addr string, roots *x509.CertPool, src CertSource) ([]byte, error) {
	conn, err := c.dialVerified(addr, roots, src)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	resp, err := joinv1.NewJoinClient(conn).GetCA(ctx, &joinv1.GetCARequest{})
	if err != nil {
		return nil, fmt.Errorf("CAs of %s: %w", addr, fromJoinStatus(err))
	}
	if _, err := ParseCertificatesPEM(resp.GetCaBundlePem()); err != nil {
		return nil, fmt.Errorf("CAs of %s: %w", addr, err)
	}
	return resp.GetCaBundlePem(), nil
}

// GossipKeys asks the control node at addr for the gossip key ring
// (primary first), as this node (src's certificate).
func (c *JoinClient) GossipKeys(ctx context.Context, addr string, roots *x509.CertPool, src CertSource) ([][]byte, error) {
	conn, err := c.dialVerified(addr, roots, src)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	resp, err := joinv1.NewJoinClient(conn).GossipKeys(ctx, &joinv1.GossipKeysRequest{})
	if err != nil {
		return nil, fmt.Errorf("gossip keys of %s: %w", addr, fromJoinStatus(err))
	}
	if len(resp.GetKeys()) == 0 {
		return nil, fmt.Errorf("gossip keys of %s: an empty ring", addr)
	}
	return resp.GetKeys(), nil
}

func (c *JoinClient) dialVerified(addr string, roots *x509.CertPool, src CertSource) (*grpc.ClientConn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", addr, err)
	}
	creds := credentials.NewTLS(ClientTLSConfig(roots, src, host))
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, c.cfg.DialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("dial %s verifying against the cluster CA: %w", addr, err)
	}
	return conn, nil
}

// checkIssued verifies that an issued certificate chains to roots, is for
// key, and carries the identity asked for.
func checkIssued(certPEM []byte, key *ecdsa.PrivateKey, roots *x509.CertPool, want Identity) (*x509.Certificate, error) {
	certs, err := ParseCertificatesPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("issued certificate: %w", err)
	}
	cert := certs[0]
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("issued certificate does not verify against the cluster CA: %w", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("issued certificate is for another key")
	}
	got, err := IdentityFromCert(cert)
	if err != nil {
		return nil, fmt.Errorf("issued certificate: %w", err)
	}
	if got != want {
		return nil, fmt.Errorf("issued certificate is for %s, asked for %s", got, want)
	}
	return cert, nil
}
