package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// CertSource hands out the current certificate to TLS (a Renewer swaps it
// without restarting listeners or connections).
type CertSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error)
}

// StaticCert is a CertSource that never changes.
type StaticCert struct{ Cert tls.Certificate }

// GetCertificate implements CertSource.
func (s StaticCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return &s.Cert, nil
}

// GetClientCertificate implements CertSource.
func (s StaticCert) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return &s.Cert, nil
}

// ServerTLSConfig is the TLS config of a Skiff port. Use
// tls.RequireAndVerifyClientCert for ports where every caller has a
// certificate (Raft, agent) and tls.VerifyClientCertIfGiven for the API
// port, behind a SplitListener, so that joining nodes reach the join
// service and nothing else.
func ServerTLSConfig(roots *x509.CertPool, src CertSource, clientAuth tls.ClientAuthType) *tls.Config {
	return &tls.Config{
		GetCertificate: src.GetCertificate,
		ClientCAs:      roots,
		ClientAuth:     clientAuth,
		MinVersion:     tls.VersionTLS13,
		NextProtos:     []string{"h2"},
	}
}

// ClientTLSConfig verifies servers against roots and presents src's
// certificate. serverName may be empty when the dialer sets it from the
// address (gRPC does).
func ClientTLSConfig(roots *x509.CertPool, src CertSource, serverName string) *tls.Config {
	cfg := &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS13}
	if src != nil {
		cfg.GetClientCertificate = src.GetClientCertificate
	}
	return cfg
}

// SplitListener terminates TLS on one port and hands each connection to
// one of two listeners by what the client proved:
//
//   - Authenticated: the client presented a certificate that verified
//     against the cluster CA. Serve the API (and everything else) here.
//   - Anonymous: the client presented no certificate. Serve ONLY the join
//     service here (GetCA, Join): a joining node has nothing but a token.
//
// A client presenting a certificate that does not verify (another CA,
// expired) fails the handshake and reaches neither. Because the split is
// by connection and the anonymous gRPC server registers only the join
// service, no per-method exemption list can leak the API to anonymous
// callers. Serve both with grpc.Creds(HandshakenTLS()).
type SplitListener struct {
	inner            net.Listener
	cfg              *tls.Config
	log              *slog.Logger
	handshakeTimeout time.Duration
	authed, anon     *routedListener

	mu       sync.Mutex
	closed   bool
	closeErr error
	done     chan struct{}
}

// HandshakeTimeout bounds one TLS handshake on a SplitListener.
const HandshakeTimeout = 10 * time.Second

// NewSplitListener starts accepting on inner. cfg must use
// tls.VerifyClientCertIfGiven and carry the CA in ClientCAs.
func NewSplitListener(inner net.Listener, cfg *tls.Config, logger *slog.Logger) (*SplitListener, error) {
	if cfg == nil || cfg.ClientAuth != tls.VerifyClientCertIfGiven || cfg.ClientCAs == nil {
		return nil, errors.New("split listener: TLS config must verify client certificates if given (tls.VerifyClientCertIfGiven) against ClientCAs")
	}
	if logger == nil {
		logger = slog.Default()
	}
	cfg = cfg.Clone()
	if !containsString(cfg.NextProtos, "h2") {
		cfg.NextProtos = append(cfg.NextProtos, "h2")
	}
	s := &SplitListener{inner: inner, cfg: cfg, log: logger.With("component", "tls", "listener", inner.Addr().String()),
		handshakeTimeout: HandshakeTimeout, done: make(chan struct{})}
	s.authed = newRoutedListener(s)
	s.anon = newRoutedListener(s)
	go s.acceptLoop()
	return s, nil
}

// Authenticated is the listener of connections with a verified client
// certificate.
func (s *SplitListener) Authenticated() net.Listener { return s.authed }

// Anonymous is the listener of connections without a client certificate.
func (s *SplitListener) Anonymous() net.Listener { return s.anon }

// Addr is the port's address.
func (s *SplitListener) Addr() net.Addr { return s.inner.Addr() }

// Close closes the port and both listeners.
func (s *SplitListener) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.done)
	return s.inner.Close()
}

func (s *SplitListener) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closeErr == nil {
		s.closeErr = err
	}
}

func (s *SplitListener) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closeErr != nil {
		return s.closeErr
	}
	return net.ErrClosed
}

func (s *SplitListener) acceptLoop() {
	var backoff time.Duration
	for {
		conn, err := s.inner.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				// Permanent: both listeners return it from Accept.
				s.fail(fmt.Errorf("accept on %s: %w", s.inner.Addr(), err))
				s.Close()
				return
			}
			// Anything else (out of file descriptors, aborted connection)
			// passes: back off like net/http and keep serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed; retrying", "err", err, "in", backoff)
			select {
			case <-time.After(backoff):
				continue
			case <-s.done:
				return
			}
		}
		backoff = 0
		go s.handshake(conn)
	}
}

func (s *SplitListener) handshake(raw net.Conn) {
	tc := tls.Server(raw, s.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), s.handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		// A refused client certificate ends here; the client sees the TLS
		// alert. Logged so an operator can tell why a node cannot connect.
		s.log.Info("TLS handshake refused", "remote", raw.RemoteAddr().String(), "err", err)
		lingerClose(raw)
		return
	}
	st := tc.ConnectionState()
	target := s.anon
	if len(st.VerifiedChains) > 0 {
		target = s.authed
	}
	if !target.deliver(tc) {
		tc.Close()
	}
}

// lingerClose closes a connection whose handshake failed so that the
// client still reads the TLS alert ("unknown certificate authority"):
// closing at once with the client's bytes unread makes the kernel send a
// reset that destroys the alert, and the client sees only "broken pipe".
func lingerClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		_ = tc.SetReadDeadline(time.Now().Add(time.Second))
		_, _ = io.Copy(io.Discard, tc)
	}
	c.Close()
}

// routedListener is one side of a SplitListener.
type routedListener struct {
	parent *SplitListener
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newRoutedListener(p *SplitListener) *routedListener {
	return &routedListener{parent: p, conns: make(chan net.Conn), closed: make(chan struct{})}
}

// deliver waits for Accept; a side nobody serves drops the connection
// after HandshakeTimeout instead of piling up goroutines.
func (l *routedListener) deliver(c net.Conn) bool {
	t := time.NewTimer(l.parent.handshakeTimeout)
	defer t.Stop()
	select {
	case l.conns <- c:
		return true
	case <-t.C:
	case <-l.closed:
	case <-l.parent.done:
	}
	return false
}

// Accept implements net.Listener.
func (l *routedListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-l.parent.done:
		return nil, l.parent.err()
	}
}

// Close stops this side; the port closes when both sides are closed.
func (l *routedListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	p := l.parent
	select {
	case <-p.authed.closed:
		select {
		case <-p.anon.closed:
			return p.Close()
		default:
		}
	default:
	}
	return nil
}

// Addr implements net.Listener.
func (l *routedListener) Addr() net.Addr { return l.parent.inner.Addr() }

// HandshakenTLS returns gRPC server credentials for connections a
// SplitListener already secured: it reports their TLS state (so peer
// identity works as with credentials.NewTLS) without a second handshake.
func HandshakenTLS() credentials.TransportCredentials { return handshakenTLS{} }

type handshakenTLS struct{}

func (handshakenTLS) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("handshaken TLS credentials are for servers only")
}

func (handshakenTLS) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	// A *tls.Conn, or a wrapper of one (GuardedListener's).
	tc, ok := c.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return nil, nil, fmt.Errorf("connection from %s is %T, not TLS from a SplitListener", c.RemoteAddr(), c)
	}
	st := tc.ConnectionState()
	if !st.HandshakeComplete {
		return nil, nil, fmt.Errorf("connection from %s: TLS handshake not complete", c.RemoteAddr())
	}
	return c, credentials.TLSInfo{State: st, CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
}

func (handshakenTLS) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.3"}
}

func (h handshakenTLS) Clone() credentials.TransportCredentials { return h }

func (handshakenTLS) OverrideServerName(string) error { return nil }

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
