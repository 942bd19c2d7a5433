package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
)

// ErrUntrustedCA means a certificate does not chain to any CA the node
// trusts now (a CA dropped by a finished rotation, or a foreign one).
var ErrUntrustedCA = errors.New("certificate is not signed by a trusted cluster CA")

// Bundle is the cluster's CAs as one node holds them: the signer, which
// issues every new certificate (only on control nodes, which hold its
// key), and the trusted set, which verifies peers. Outside a rotation the
// set is the signer alone; during one (`ctl ca rotate`) it is the new
// signer and the old CA, so certificates of either verify until every
// holder has renewed, and then the old CA is dropped.
//
// Both change without a restart: TLS configs made by ServerConfig and
// ClientConfig read the set in force at every handshake, and callers
// that sign ask Signer each time. It is safe for concurrent use.
type Bundle struct {
	cur atomic.Pointer[bundleState]
}

type bundleState struct {
	signer  *CA
	trusted []*x509.Certificate
	pool    *x509.CertPool
	pem     []byte
}

// NewBundle trusts signer and the extra CAs given.
func NewBundle(signer *CA, others ...*x509.Certificate) (*Bundle, error) {
	b := &Bundle{}
	if err := b.Set(signer, others...); err != nil {
		return nil, err
	}
	return b, nil
}

// Set replaces the signer and the trusted set (the signer is always
// trusted; duplicates are dropped). Handshakes from now on use it.
func (b *Bundle) Set(signer *CA, others ...*x509.Certificate) error {
	if signer == nil || signer.Cert == nil {
		return errors.New("CA bundle: a signer is required")
	}
	st := &bundleState{signer: signer, pool: x509.NewCertPool()}
	for _, c := range append([]*x509.Certificate{signer.Cert}, others...) {
		if c == nil || !c.IsCA {
			return fmt.Errorf("%w: CA bundle: a trusted certificate is not a CA", ErrBadPEM)
		}
		if containsCert(st.trusted, c) {
			continue
		}
		st.trusted = append(st.trusted, c)
		st.pool.AddCert(c)
		st.pem = append(st.pem, encodeCertPEM(c.Raw)...)
	}
	b.cur.Store(st)
	return nil
}

func containsCert(set []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range set {
		if bytes.Equal(x.Raw, c.Raw) {
			return true
		}
	}
	return false
}

// Signer is the CA that issues certificates now.
func (b *Bundle) Signer() *CA { return b.cur.Load().signer }

// Trusted is the set of CAs in force, the signer first.
func (b *Bundle) Trusted() []*x509.Certificate {
	return append([]*x509.Certificate(nil), b.cur.Load().trusted...)
}

// Pool is the trusted set as a pool (a snapshot: it does not follow Set).
func (b *Bundle) Pool() *x509.CertPool { return b.cur.Load().pool }

// PEM is the trusted set in PEM, the signer first: what ca.crt holds and
// what joining and renewing nodes are handed (a join token's pin may name
// any of them).
func (b *Bundle) PEM() []byte { return bytes.Clone(b.cur.Load().pem) }

// Verify says whether cert chains to a CA trusted now, for client
// authentication. Open connections are checked with it when the set
// shrinks (GuardedListener.Recheck), since a handshake's verification
// holds only for that moment.
func (b *Bundle) Verify(cert *x509.Certificate) error {
	if cert == nil {
		return fmt.Errorf("%w: no certificate", ErrUntrustedCA)
	}
	_, err := cert.Verify(x509.VerifyOptions{Roots: b.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return fmt.Errorf("%w: %q (issuer %q): %w", ErrUntrustedCA, cert.Subject.CommonName, cert.Issuer.CommonName, err)
	}
	return nil
}

// IssuedBySigner says whether cert was signed by the current signer (as
// opposed to another CA of the set): a certificate that is not must be
// renewed before a rotation can finish.
func (b *Bundle) IssuedBySigner(cert *x509.Certificate) bool {
	return cert != nil && cert.CheckSignatureFrom(b.Signer().Cert) == nil
}

// ServerConfig returns a copy of cfg that verifies client certificates
// against the set in force at each handshake (tls.Config.GetConfigForClient
// hands crypto/tls a copy with the current ClientCAs). Call it last, once
// cfg is complete: the copy made per connection is of cfg as it is now.
// Session tickets are off, so that every connection is verified against the
// current set rather than resumed on an earlier verification.
func (b *Bundle) ServerConfig(cfg *tls.Config) *tls.Config {
	base := cfg.Clone()
	base.GetConfigForClient = nil
	base.SessionTicketsDisabled = true
	out := base.Clone()
	out.ClientCAs = b.Pool() // for checks that a config verifies clients at all
	out.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.ClientCAs = b.Pool()
		return c, nil
	}
	return out
}

// ClientConfig verifies servers against the set in force at each
// handshake and presents src's certificate (src may be nil).
//
// crypto/tls verifies a client's roots only from a fixed RootCAs, so the
// chain is verified here, in VerifyConnection, instead (InsecureSkipVerify
// only turns off the built-in check that this one replaces): the server's
// certificate must chain to a trusted CA and allow server authentication,
// and name serverName, or, when that is empty, the name the dialer sent
// (gRPC sets it from the address). A server dialled by IP address sends
// no name to match; the chain, the server-authentication usage and the
// identity still prove a control node of this cluster: the CA grants server
// authentication to control nodes and, for their stream port at their own
// address, to workers, whose certificates are refused here
// (nodeserving.go).
func (b *Bundle) ClientConfig(src CertSource, serverName string) *tls.Config {
	cfg := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error { return b.verifyServer(cs, serverName) }}
	if src != nil {
		cfg.GetClientCertificate = src.GetClientCertificate
	}
	return cfg
}

func (b *Bundle) verifyServer(cs tls.ConnectionState, serverName string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: the server presented no certificate")
	}
	name := serverName
	if name == "" {
		name = cs.ServerName
	}
	opts := x509.VerifyOptions{Roots: b.Pool(), DNSName: name, Intermediates: x509.NewCertPool(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
	}
	return refuseWorkerServer(cs.PeerCertificates[0])
}

// LoadBundle reads a PKI directory: ca.crt holds the trusted set, the
// signer first (a directory from before rotations holds the signer
// alone), and ca.key the signer's key (absent on workers).
func LoadBundle(dir string) (*Bundle, error) {
	signer, err := LoadCA(dir)
	if err != nil {
		return nil, err
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("read CA bundle: %w", err)
	}
	all, err := ParseCertificatesPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA bundle from %s: %w", dir, err)
	}
	return NewBundle(signer, all[1:]...)
}

// Save writes the bundle into dir: ca.crt with the trusted set (signer
// first) and ca.key with the signer's key if this node holds it.
func (b *Bundle) Save(dir string) error {
	st := b.cur.Load()
	if err := st.signer.Save(dir); err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, CACertFile), st.pem, 0o644)
}
