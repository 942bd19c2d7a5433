package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
)

// A worker serves one port, the agent's stream port (7445), to control
// nodes only. Its certificate therefore allows server authentication, for
// the one IP address the join service let it name (its own, see
// ownAddress); the rules below keep that from widening what a worker can
// do:
//
//   - a client dialling a control node (Bundle.ClientConfig) refuses a
//     server certificate of a worker identity, so a worker cannot pose as
//     a control node even at an address it holds;
//   - a control node dialling a worker (NodeClientConfig) accepts only
//     node:<that node> at the address it dialled, so a Node whose
//     InternalIP names another machine is refused, not served by it;
//   - the worker's port (NodeStreamServerConfig, ControlPeerOnly) answers
//     control-node certificates only: not users, not other workers.

// ErrNotControlPeer is ControlPeerOnly's refusal.
var ErrNotControlPeer = errors.New("only control nodes may call this port")

// ControlPeerOnly accepts a verified client certificate of a control node.
func ControlPeerOnly(leaf *x509.Certificate) error {
	id, err := IdentityFromCert(leaf)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotControlPeer, err)
	}
	if id.Role != RoleControl {
		return fmt.Errorf("%w: the certificate is for %s", ErrNotControlPeer, id)
	}
	return nil
}

// NodeStreamServerConfig is the TLS of a worker's stream port: src's
// (serving) certificate, client certificates required and verified
// against the CAs trusted at each handshake, and only control nodes'
// accepted (the handshake fails for anyone else).
func (b *Bundle) NodeStreamServerConfig(src CertSource) *tls.Config {
	return b.ServerConfig(&tls.Config{GetCertificate: src.GetCertificate, ClientAuth: tls.RequireAndVerifyClientCert,
		MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return ErrNotControlPeer
			}
			return ControlPeerOnly(cs.PeerCertificates[0])
		}})
}

// NodeMetricsServerConfig is the TLS of a worker's metrics port: src's
// (serving) certificate, a client certificate from a trusted CA required;
// which identities may read is decided per request (admins and control
// nodes, as on a control node's metrics port).
func (b *Bundle) NodeMetricsServerConfig(src CertSource) *tls.Config {
	return b.ServerConfig(&tls.Config{GetCertificate: src.GetCertificate, ClientAuth: tls.RequireAndVerifyClientCert,
		MinVersion: tls.VersionTLS13})
}

// NodeClientConfig is the TLS with which a control node dials the stream
// port of worker node at ip: the server must present a certificate of
// node:<node>, chained to a trusted CA, allowing server authentication,
// with ip among its addresses. src is the control node's certificate.
func (b *Bundle) NodeClientConfig(src CertSource, node string, ip netip.Addr) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error { return b.verifyNodeServer(cs, node, ip) }}
	if src != nil {
		cfg.GetClientCertificate = src.GetClientCertificate
	}
	return cfg
}

func (b *Bundle) verifyNodeServer(cs tls.ConnectionState, node string, ip netip.Addr) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: the node presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	opts := x509.VerifyOptions{Roots: b.Pool(), DNSName: ip.String(), Intermediates: x509.NewCertPool(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(opts); err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
	}
	id, err := IdentityFromCert(leaf)
	if err != nil {
		return err
	}
	if id.Role != RoleNode || id.Name != node {
		return fmt.Errorf("tls: %s answered at %s, where node %q was expected", id, ip, node)
	}
	return nil
}

// refuseWorkerServer is part of every check of a control node's server
// certificate: a worker's serving certificate is for its stream port only.
func refuseWorkerServer(leaf *x509.Certificate) error {
	if id, err := IdentityFromCert(leaf); err == nil && id.Role == RoleNode {
		return fmt.Errorf("tls: the server presented the certificate of %s, a worker, where a control node was expected", id)
	}
	return nil
}
