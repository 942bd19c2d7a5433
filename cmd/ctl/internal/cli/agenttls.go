package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"sync"

	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/proto/client"
)

// rereadTLS is the TLS of an agent run alone (ctl agent) on a worker's
// node.conf, whose files (certificate, key, CAs) the worker process
// rewrites at each renewal and CA change: each handshake reads them again
// (handshakes are rare: a connection lasts), so neither needs a restart.
// When a read fails (a file half-written) the last good read is used.
type rereadTLS struct {
	cc   *client.Config
	mu   sync.Mutex
	last *tls.Config
}

// newRereadTLS checks that cc's files make a TLS config now.
func newRereadTLS(cc *client.Config) (*rereadTLS, error) {
	first, err := cc.TLS()
	if err != nil {
		return nil, err
	}
	return &rereadTLS{cc: cc, last: first}, nil
}

func (r *rereadTLS) current() *tls.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	if next, err := r.cc.TLS(); err == nil {
		r.last = next
	}
	return r.last
}

// Config is the client TLS config. The chain check crypto/tls would make
// against a fixed RootCAs is made in VerifyConnection against the CAs read
// at that handshake (InsecureSkipVerify only turns the fixed one off),
// with the same name check (the name sent; none for an IP address).
func (r *rereadTLS) Config() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, ServerName: r.cc.ServerName, InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c := r.current().Certificates[0]
			return &c, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("tls: the server presented no certificate")
			}
			opts := x509.VerifyOptions{Roots: r.current().RootCAs, DNSName: cs.ServerName, Intermediates: x509.NewCertPool()}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
				return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
			}
			return client.RefuseWorkerServer(cs)
		}}
}

// StreamServerConfig is the TLS of the agent's stream port (7445) on the
// same files: the node's certificate (it serves the node's own address)
// and, at each handshake, the CAs read then; only control nodes' client
// certificates pass (pki.ControlPeerOnly).
func (r *rereadTLS) StreamServerConfig() *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.RequireAndVerifyClientCert, NextProtos: []string{"h2"}}
	out := base.Clone()
	out.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cur := r.current()
		c := base.Clone()
		c.Certificates, c.ClientCAs, c.SessionTicketsDisabled = cur.Certificates, cur.RootCAs, true
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return pki.ErrNotControlPeer
			}
			return pki.ControlPeerOnly(cs.PeerCertificates[0])
		}
		return c, nil
	}
	return out
}
