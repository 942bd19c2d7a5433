package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrRevoked means a certificate's identity was revoked after the
// certificate was issued.
var ErrRevoked = errors.New("certificate revoked")

// Revocation is one record of the cluster's deny list: every certificate
// of Identity issued at or before RevokedAt is refused.
//
// It denies by identity and time rather than by serial number: a node's
// certificate is renewed every few weeks by the Renewer (and a control
// node re-signs its own), so the serials of an identity are many and not
// recorded anywhere; "everything issued to control:c2 up to now" covers
// them all, including ones the revoker never saw. A machine that later
// joins again under the same name gets a certificate issued after the
// revocation and is served.
type Revocation struct {
	// Identity is the certificate subject's common name (Identity.User):
	// "user:bob", "node:w1", "control:c2".
	Identity  string    `json:"identity"`
	RevokedAt time.Time `json:"revokedAt"`
	// Expires is when no certificate the record covers can still verify;
	// the record is dropped after it. See RevocationExpiry.
	Expires time.Time `json:"expires"`
	// By is the identity that revoked it; Reason says why ("member
	// removed", "ctl user revoke").
	By     string `json:"by,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// IssuedAt is when the CA signed cert: sign back-dates NotBefore by
// clockSkew so that nodes with slow clocks accept fresh certificates.
func IssuedAt(cert *x509.Certificate) time.Time { return cert.NotBefore.Add(clockSkew) }

// RevocationExpiry is how long a revocation made at revokedAt must be
// kept: until the last CA in the bundle expires, since the CA cuts every
// certificate it signs to its own expiry (sign) and nothing else bounds
// the life of a certificate issued before revokedAt (user certificates
// take any --ttl). A record is small; keeping it for the CA's life is
// cheap, and a shorter guess would let a long-lived certificate return.
func RevocationExpiry(bundle []*x509.Certificate, revokedAt time.Time) time.Time {
	exp := revokedAt
	for _, c := range bundle {
		if c.NotAfter.After(exp) {
			exp = c.NotAfter
		}
	}
	return exp
}

// DenyList is the set of revocations in force, read at every TLS handshake
// and swapped whole when the replicated list changes. The zero value is an
// empty list; it is safe for concurrent use.
type DenyList struct {
	byIdentity atomic.Pointer[map[string]Revocation]
}

// Replace makes recs the list in force.
func (d *DenyList) Replace(recs []Revocation) {
	m := make(map[string]Revocation, len(recs))
	for _, r := range recs {
		if cur, ok := m[r.Identity]; !ok || r.RevokedAt.After(cur.RevokedAt) {
			m[r.Identity] = r
		}
	}
	d.byIdentity.Store(&m)
}

// Len is the number of identities revoked.
func (d *DenyList) Len() int {
	m := d.byIdentity.Load()
	if m == nil {
		return 0
	}
	return len(*m)
}

// Check refuses a certificate whose identity was revoked at or after it
// was issued. Certificates carry their times to the second, so one issued
// in the same second as the revocation counts as covered (fail safe); a
// user created again is served from the next second on.
func (d *DenyList) Check(cert *x509.Certificate) error {
	m := d.byIdentity.Load()
	if m == nil || cert == nil {
		return nil
	}
	r, ok := (*m)[cert.Subject.CommonName]
	if !ok || IssuedAt(cert).After(r.RevokedAt) {
		return nil
	}
	return fmt.Errorf("%w: %q was revoked at %s (%s); this certificate was issued %s",
		ErrRevoked, r.Identity, r.RevokedAt.UTC().Format(time.RFC3339), r.Reason, IssuedAt(cert).UTC().Format(time.RFC3339))
}

// GuardedListener wraps the authenticated side of a SplitListener (or any
// listener of handshaken *tls.Conn): it remembers each connection's client
// certificate so that Recheck can close the connections whose certificate
// a changed rule (a revocation) now refuses. The handshake check alone
// would leave a revoked client's open connection (a watch, say) serving.
type GuardedListener struct {
	net.Listener
	check func(*x509.Certificate) error
	log   *slog.Logger

	mu    sync.Mutex
	conns map[*guardedConn]struct{}
}

// NewGuardedListener wraps inner; check decides whether a client
// certificate is still served.
func NewGuardedListener(inner net.Listener, check func(*x509.Certificate) error, log *slog.Logger) *GuardedListener {
	if log == nil {
		log = slog.Default()
	}
	return &GuardedListener{Listener: inner, check: check, log: log, conns: map[*guardedConn]struct{}{}}
}

// Accept implements net.Listener.
func (l *GuardedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*tls.Conn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("guarded listener: connection from %s is %T, not handshaken TLS", c.RemoteAddr(), c)
	}
	st := tc.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return tc, nil // nothing to re-check
	}
	gc := &guardedConn{Conn: tc, leaf: st.PeerCertificates[0], l: l}
	l.mu.Lock()
	l.conns[gc] = struct{}{}
	l.mu.Unlock()
	return gc, nil
}

// Recheck closes every open connection whose certificate check refuses now.
func (l *GuardedListener) Recheck() {
	l.mu.Lock()
	open := make([]*guardedConn, 0, len(l.conns))
	for c := range l.conns {
		open = append(open, c)
	}
	l.mu.Unlock()
	for _, c := range open {
		if err := l.check(c.leaf); err != nil {
			l.log.Warn("closing the connection of a client no longer allowed", "remote", c.RemoteAddr().String(), "identity", c.leaf.Subject.CommonName, "err", err)
			_ = c.Close()
		}
	}
}

// guardedConn is a handshaken connection a GuardedListener can cut. It
// keeps ConnectionState, so HandshakenTLS serves it like a *tls.Conn.
type guardedConn struct {
	*tls.Conn
	leaf *x509.Certificate
	l    *GuardedListener
	once sync.Once
}

func (c *guardedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
