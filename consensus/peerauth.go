package consensus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/credentials"
)

// ErrPeerRefused: a connection on the consensus port (either direction)
// presented a certificate that does not name a current control member.
var ErrPeerRefused = errors.New("consensus peer refused")

// membershipPoll is how often the store looks for a changed Raft
// configuration, to close connections of peers that left it.
const membershipPoll = 100 * time.Millisecond

// peerGuard decides who may talk on the consensus port, and closes the
// connections of peers that stop qualifying. Every connection, Raft or
// gRPC, inbound or outbound, is TLS-handshaken by the mux with
// VerifyConnection = check and then registered here; there is no path
// around it. The certificate chain itself is verified by crypto/tls first
// (ServerTLS.ClientCAs / ClientTLS.RootCAs).
type peerGuard struct {
	// identify is Config.PeerIdentity.
	identify func(*x509.Certificate) (string, error)
	// configuration is the Raft configuration's server ids; ok is false
	// while raft is not open yet.
	configuration func() (ids []string, ok bool)
	join          map[string]bool
	log           *slog.Logger

	mu    sync.Mutex
	conns map[*guardedConn]struct{}
}

func newPeerGuard(cfg Config, r *atomic.Pointer[raft.Raft], log *slog.Logger) *peerGuard {
	g := &peerGuard{identify: cfg.PeerIdentity, join: map[string]bool{}, log: log, conns: map[*guardedConn]struct{}{}}
	for _, id := range cfg.JoinMembers {
		g.join[id] = true
	}
	g.configuration = func() ([]string, bool) {
		rf := r.Load()
		if rf == nil {
			return nil, false
		}
		return serverIDs(rf.GetConfiguration().Configuration()), true
	}
	return g
}

func serverIDs(c raft.Configuration) []string {
	ids := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		ids[i] = string(s.ID)
	}
	sort.Strings(ids)
	return ids
}

// check says which member a verified peer certificate speaks for, or why
// it is refused.
func (g *peerGuard) check(leaf *x509.Certificate) (string, error) {
	if leaf == nil {
		return "", fmt.Errorf("%w: no certificate", ErrPeerRefused)
	}
	id, err := g.identify(leaf)
	if err != nil {
		return "", fmt.Errorf("%w: certificate %q: %w", ErrPeerRefused, leaf.Subject.CommonName, err)
	}
	ids, ok := g.configuration()
	if !ok {
		return "", fmt.Errorf("%w: %q: this node's store is still opening", ErrPeerRefused, id)
	}
	if len(ids) == 0 {
		// Bootstrap: a node added by `ctl join --control` has no Raft
		// configuration until the leader's first AppendEntries brings one.
		// Until then it accepts only the members the join service listed
		// when it added this node (Config.JoinMembers, kept in node.json).
		// Accepting any control identity instead would let a removed
		// control node (whose certificate still verifies) feed a joining
		// node a forged log before the real leader reaches it.
		if !g.join[id] {
			return "", fmt.Errorf("%w: %q is not among the members this node joined (%s)", ErrPeerRefused, id, strings.Join(slices.Sorted(maps.Keys(g.join)), ", "))
		}
		return id, nil
	}
	if _, found := slices.BinarySearch(ids, id); !found {
		return "", fmt.Errorf("%w: %q is not a member of the store (members: %s)", ErrPeerRefused, id, strings.Join(ids, ", "))
	}
	return id, nil
}

// verifyConnection is tls.Config.VerifyConnection: it runs after the chain
// verified, on both the server and the client side of a handshake.
func (g *peerGuard) verifyConnection(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("%w: no certificate", ErrPeerRefused)
	}
	_, err := g.check(cs.PeerCertificates[0])
	return err
}

// guard returns a copy of cfg that refuses peers the guard refuses. It
// offers ALPN "h2", which gRPC clients (credentials.NewTLS) insist on;
// Raft connections offer no protocol and are not affected.
//
// A config that checks the chain itself in VerifyConnection, or picks a
// config per connection in GetConfigForClient (a CA bundle whose trust
// changes without a restart, pki.Bundle), keeps doing so, guarded too.
func (g *peerGuard) guard(cfg *tls.Config) *tls.Config {
	c := cfg.Clone()
	if verifyChain := c.VerifyConnection; verifyChain != nil {
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if err := verifyChain(cs); err != nil {
				return err
			}
			return g.verifyConnection(cs)
		}
	} else {
		c.VerifyConnection = g.verifyConnection
	}
	if !slices.Contains(c.NextProtos, "h2") {
		c.NextProtos = append(c.NextProtos, "h2")
	}
	if perConn := c.GetConfigForClient; perConn != nil {
		c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			pc, err := perConn(hello)
			if err != nil || pc == nil {
				return pc, err
			}
			pc = pc.Clone()
			pc.GetConfigForClient = nil
			return g.guard(pc), nil
		}
	}
	return c
}

// handshake runs the TLS handshake of a new connection and registers it.
// A refused peer is logged here, once per connection.
func (g *peerGuard) handshake(ctx context.Context, tc *tls.Conn, direction, kind string) (*guardedConn, error) {
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = tc.Close()
		msg := "consensus port: TLS handshake failed"
		if errors.Is(err, ErrPeerRefused) {
			msg = "consensus port: peer refused"
		}
		g.log.Warn(msg, "direction", direction, "kind", kind, "remote", tc.RemoteAddr().String(), "err", err)
		return nil, err
	}
	cs := tc.ConnectionState()
	gc := &guardedConn{Conn: tc, leaf: cs.PeerCertificates[0], g: g}
	g.mu.Lock()
	g.conns[gc] = struct{}{}
	g.mu.Unlock()
	return gc, nil
}

// recheck closes every open connection whose peer no longer qualifies (it
// left the configuration or its certificate was revoked).
func (g *peerGuard) recheck(reason string) {
	g.mu.Lock()
	open := make([]*guardedConn, 0, len(g.conns))
	for c := range g.conns {
		open = append(open, c)
	}
	g.mu.Unlock()
	for _, c := range open {
		if _, err := g.check(c.leaf); err != nil {
			g.log.Warn("consensus port: closing the connection of a peer no longer allowed", "reason", reason, "remote", c.RemoteAddr().String(), "err", err)
			_ = c.Close()
		}
	}
}

// watchMembership rechecks open connections whenever the Raft
// configuration changes (a member removed is cut off within membershipPoll).
func (g *peerGuard) watchMembership(stop <-chan struct{}) {
	t := time.NewTicker(membershipPoll)
	defer t.Stop()
	last, _ := g.configuration()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		ids, ok := g.configuration()
		if !ok || slices.Equal(ids, last) {
			continue
		}
		last = ids
		g.recheck("store membership changed")
	}
}

// guardedConn is a handshaken connection the guard can cut.
type guardedConn struct {
	*tls.Conn
	leaf *x509.Certificate
	g    *peerGuard
	once sync.Once
}

func (c *guardedConn) Close() error {
	c.once.Do(func() {
		c.g.mu.Lock()
		delete(c.g.conns, c)
		c.g.mu.Unlock()
	})
	return c.Conn.Close()
}

// handshakenCreds are gRPC transport credentials for connections the mux
// already secured (and the guard admitted): no second handshake, but the
// TLS state is reported so peer identity works as with credentials.NewTLS.
type handshakenCreds struct{}

func (handshakenCreds) info(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	gc, ok := c.(*guardedConn)
	if !ok {
		return nil, nil, fmt.Errorf("consensus gRPC: connection from %s was not secured by the consensus port (%T)", c.RemoteAddr(), c)
	}
	return gc, credentials.TLSInfo{State: gc.ConnectionState(), CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
}

func (h handshakenCreds) ClientHandshake(_ context.Context, _ string, c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return h.info(c)
}

func (h handshakenCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return h.info(c)
}

func (handshakenCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.3"}
}

func (h handshakenCreds) Clone() credentials.TransportCredentials { return h }

func (handshakenCreds) OverrideServerName(string) error { return nil }

// RecheckPeers closes the open consensus-port connections of peers that
// PeerIdentity or the membership now refuse. Call it when the answer of
// PeerIdentity may have changed (a certificate was revoked); membership
// changes are noticed by the store itself.
func (s *Store) RecheckPeers() { s.guard.recheck("peer identity rules changed") }

// MemberIDs is the latest Raft configuration's server ids (possibly not
// yet committed), sorted; empty before this node has a configuration. It
// reads raft's cached configuration and never waits.
func (s *Store) MemberIDs() []string {
	ids, _ := s.guard.configuration()
	return ids
}
