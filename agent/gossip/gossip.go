package gossip

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// DefaultPort is the gossip port, TCP and UDP.
const DefaultPort = 7946

// Roles a member has.
const (
	RoleControl = "control"
	RoleWorker  = "worker"
)

// Sentinel errors.
var (
	// ErrKey: the gossip key is missing or not 16, 24 or 32 bytes.
	ErrKey = errors.New("gossip key")
	// ErrConfig: a required setting is missing or malformed.
	ErrConfig = errors.New("gossip config")
	// ErrJoin: no member could be reached (or all refused us).
	ErrJoin = errors.New("gossip join")
)

// Meta is what every member tells the others about itself. It travels in
// memberlist's node metadata (at most 512 bytes encoded).
type Meta struct {
	Role string `json:"role"`
	Node string `json:"node"`
	IP   string `json:"ip"`
	// PodCIDR is the node's pod range, when it has one.
	PodCIDR string `json:"podCIDR,omitempty"`
	// APIAddress (host:port) of a control node's API.
	APIAddress string `json:"api,omitempty"`
	// ClusterCIDR is the cluster's whole pod range, carried by control
	// nodes (read from the store) for workers to learn.
	ClusterCIDR string `json:"clusterCIDR,omitempty"`
	// Keys are the fingerprints (KeyFingerprint) of the keys this member
	// decrypts with, comma-separated, the primary first; filled in by the
	// member itself (a string keeps Meta comparable).
	Keys string `json:"keys,omitempty"`
}

// leavingPrefix starts the notice a member sends each other member just
// before a graceful Leave.
const leavingPrefix = "skiff-leaving:"

// wireMeta is Meta as sent: Leaving is set just before a graceful Leave,
// because memberlist v0.5.4's leave notification does not say whether the
// member left or was found dead (Node.State is never filled in).
type wireMeta struct {
	Meta
	Leaving bool `json:"leaving,omitempty"`
}

// State of a member as this member sees it.
type State int

// Member states. Dead means memberlist's suspicion ran out (confirmed
// failure); Left means the member said goodbye (Leave).
const (
	StateUnknown State = iota
	StateAlive
	StateDead
	StateLeft
)

func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return "unknown"
}

// Member is one member as this member sees it.
type Member struct {
	Name  string
	Addr  string // gossip host:port
	State State
	// Since is when this member last saw State change, on its own clock.
	Since time.Time
	Meta  Meta
}

// Timing is the failure detector's tuning (see LANTiming).
type Timing struct {
	ProbeInterval           time.Duration
	ProbeTimeout            time.Duration
	SuspicionMult           int
	SuspicionMaxTimeoutMult int
	GossipInterval          time.Duration
	// GossipNodes is how many members each gossip round sends to
	// (0: memberlist's 3).
	GossipNodes      int
	PushPullInterval time.Duration
}

// LANTiming is tuned for one LAN (sub-millisecond round trips) so that a
// failed member is declared dead within 3 s at 500 members. The time from
// a death to a member's verdict is the sum of
//
//   - W, until some member probes the dead one: each member probes one
//     other per ProbeInterval (P) in shuffled order, so the dead member
//     is probed about once per P whatever the size: W is roughly
//     exponential with mean P (p50 0.7 P, p99 4.6 P);
//   - P, the failed probe: a direct ping (ProbeTimeout), then indirect
//     pings through 3 members and a TCP ping until the interval ends;
//   - the suspicion: SuspicionMult × log10(n) × P once another member's
//     own failed probe confirms it (memberlist's Lifeguard: unconfirmed,
//     it lasts up to SuspicionMaxTimeoutMult times longer, which is what
//     keeps a member that is only slow from being declared dead);
//   - D, gossip carrying the verdict (or the suspicion) to the member:
//     every GossipInterval to GossipNodes members, ~4 rounds at 500.
//
// With P = 200 ms, suspicion multiplier 3 and gossip every 100 ms to 4
// members: suspicion 0.6 s up to 10 members, 1.2 s at 100, 1.62 s at 500
// (at most 3× that unconfirmed), and at 500 members detection p50 ≈ 0.14
// + 0.2 + 1.62 + ~0.35 ≈ 2.3 s, p99 ≈ 0.92 + 0.2 + 1.62 + ~0.5 ≈ 3.2 s
// (the maximum of 20 deaths, about p96: ≈ 2.9 s). memberlist's LAN
// defaults (1 s probes, multiplier 4, gossip every 200 ms to 3) take
// 10.8 s of suspicion alone at 500. The price is CPU: a member sends and
// answers 5 probes a second (ping and ack, each encrypted, ~100 bytes);
// make bench-gossip reports it per member.
//
// ProbeTimeout 100 ms is ~100 LAN round trips; a late direct ack still
// counts until the interval ends, so it only decides when the indirect
// pings start. Push/pull anti-entropy runs every 30 s (memberlist's
// default; memberlist stretches it with the size: 150 s at 500): each is
// a full member list each way, so it costs in proportion to the size.
func LANTiming() Timing {
	return Timing{ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond,
		SuspicionMult: 3, SuspicionMaxTimeoutMult: 3, GossipInterval: 100 * time.Millisecond, GossipNodes: 4,
		PushPullInterval: 30 * time.Second}
}

// DefaultLANTiming is memberlist's own LAN configuration (1 s probes,
// 500 ms probe timeout, suspicion multiplier 4 stretched up to 6 times,
// gossip every 200 ms, push/pull every 30 s): the anchor LANTiming is
// measured against (make bench-gossip).
func DefaultLANTiming() Timing {
	d := memberlist.DefaultLANConfig()
	return Timing{ProbeInterval: d.ProbeInterval, ProbeTimeout: d.ProbeTimeout, SuspicionMult: d.SuspicionMult,
		SuspicionMaxTimeoutMult: d.SuspicionMaxTimeoutMult, GossipInterval: d.GossipInterval, GossipNodes: d.GossipNodes,
		PushPullInterval: d.PushPullInterval}
}

// Config configures a member.
type Config struct {
	// Name is the member's name: the node name (unique in the cluster).
	Name string
	// BindAddr and BindPort listen for gossip (default 0.0.0.0:7946; port 0
	// picks a free port).
	BindAddr string
	BindPort int
	// AdvertiseAddr is the IP the others reach this member at (default: the
	// bind address, or the first private address when bound to 0.0.0.0).
	AdvertiseAddr string
	// Key is the cluster gossip key (16, 24 or 32 bytes); required.
	Key  []byte
	Meta Meta
	// Timing defaults to LANTiming when zero.
	Timing Timing
	Logger *slog.Logger
	// WrapTransport, when set, wraps the network transport (tests use it to
	// drop packets between chosen members).
	WrapTransport func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
	// OnChange, when set, is called (outside any lock, on memberlist's
	// goroutine: keep it short) each time a member's State changes as this
	// member sees it.
	OnChange func(Member)
}

// Gossip is a running member.
type Gossip struct {
	ml      *memberlist.Memberlist
	keyMu   sync.Mutex
	keyring *memberlist.Keyring
	log     *slog.Logger

	mu      sync.Mutex
	self    Meta
	meta    []byte
	members map[string]*Member
	// leaving holds members that sent a leave notice.
	leaving map[string]bool
	now     func() time.Time
	// deaths counts the members this one saw go Dead (Stats).
	deaths uint64
	// count is how many members are in each State, kept as they change
	// so that Stats costs the same with 5 members or 5,000 (a benchmark
	// polls every member's Stats).
	count    [StateLeft + 1]int
	onChange func(Member)
}

// Start creates the member and listens; it joins nobody (see Join).
func Start(cfg Config) (*Gossip, error) {
	if cfg.Name == "" {
		return nil, fmt.Errorf("%w: name is required", ErrConfig)
	}
	if err := checkKey(cfg.Key); err != nil {
		return nil, err
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "0.0.0.0"
	}
	if net.ParseIP(cfg.BindAddr) == nil {
		return nil, fmt.Errorf("%w: bind address %q is not an IP", ErrConfig, cfg.BindAddr)
	}
	if cfg.AdvertiseAddr != "" && net.ParseIP(cfg.AdvertiseAddr) == nil {
		return nil, fmt.Errorf("%w: advertise address %q is not an IP", ErrConfig, cfg.AdvertiseAddr)
	}
	if cfg.Timing == (Timing{}) {
		cfg.Timing = LANTiming()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Meta.Keys = KeyFingerprint(cfg.Key)
	meta, err := encodeMeta(wireMeta{Meta: cfg.Meta})
	if err != nil {
		return nil, err
	}
	g := &Gossip{self: cfg.Meta, log: cfg.Logger.With("component", "gossip"), meta: meta, members: map[string]*Member{}, leaving: map[string]bool{}, now: time.Now, onChange: cfg.OnChange}
	stdlog := newStdLogger(g.log)
	bindIP := net.ParseIP(cfg.BindAddr)
	if b4 := bindIP.To4(); b4 != nil {
		bindIP = b4
	}
	nt, err := listen(bindIP, cfg.BindPort, g.log)
	if err != nil {
		return nil, fmt.Errorf("gossip listen on %s: %w", net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.BindPort)), err)
	}
	var tr memberlist.NodeAwareTransport = nt
	if cfg.WrapTransport != nil {
		tr = cfg.WrapTransport(nt)
	}
	keyring, err := memberlist.NewKeyring(nil, cfg.Key)
	if err != nil {
		_ = nt.Shutdown()
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.Transport = tr
	mc.BindAddr, mc.BindPort = cfg.BindAddr, nt.port()
	mc.AdvertiseAddr, mc.AdvertisePort = cfg.AdvertiseAddr, nt.port()
	mc.Keyring = keyring
	mc.TCPTimeout = 2 * time.Second // one LAN: a stream that takes longer is to a dead member
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	mc.EnableCompression = false
	t := cfg.Timing
	mc.ProbeInterval, mc.ProbeTimeout = t.ProbeInterval, t.ProbeTimeout
	mc.SuspicionMult, mc.SuspicionMaxTimeoutMult = t.SuspicionMult, t.SuspicionMaxTimeoutMult
	mc.GossipInterval, mc.PushPullInterval = t.GossipInterval, t.PushPullInterval
	if t.GossipNodes > 0 {
		mc.GossipNodes = t.GossipNodes
	}
	mc.Delegate = (*delegate)(g)
	mc.Events = (*events)(g)
	mc.Logger = stdlog
	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = tr.Shutdown()
		return nil, fmt.Errorf("gossip start: %w", err)
	}
	g.ml, g.keyring = ml, keyring
	return g, nil
}

// Join contacts the given members (host:port) and joins their cluster; it
// returns how many answered. Refused by every member (another key, none
// reachable): ErrJoin.
func (g *Gossip) Join(addrs ...string) (int, error) {
	n, err := g.ml.Join(addrs)
	if n == 0 {
		return 0, fmt.Errorf("%w: no member of %v answered: %w", ErrJoin, addrs, err)
	}
	return n, nil
}

// Addr is this member's advertised gossip address (host:port).
func (g *Gossip) Addr() string { return g.ml.LocalNode().Address() }

// Name is this member's name.
func (g *Gossip) Name() string { return g.ml.LocalNode().Name }

// SetMeta changes this member's metadata and tells the others.
func (g *Gossip) SetMeta(m Meta, timeout time.Duration) error {
	m.Keys = g.fingerprints()
	return g.setMeta(wireMeta{Meta: m}, timeout)
}

// KeyFingerprint names a key without revealing it: hex of the first 8
// bytes of its SHA-256.
func KeyFingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

// fingerprints of this member's keys, the primary first.
func (g *Gossip) fingerprints() string {
	var out []string
	for _, k := range g.keyring.GetKeys() {
		out = append(out, KeyFingerprint(k))
	}
	return strings.Join(out, ",")
}

// ApplyKeys makes this member's ring exactly keys, keys[0] the primary, in
// the order a rotation needs: install what is new, use the primary, remove
// what is gone. Then it tells the others its key fingerprints (metadata).
func (g *Gossip) ApplyKeys(keys [][]byte, timeout time.Duration) error {
	if len(keys) == 0 {
		return fmt.Errorf("%w: an empty key ring", ErrKey)
	}
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return err
		}
	}
	g.keyMu.Lock()
	changed := false
	have := g.keyring.GetKeys()
	for _, k := range keys {
		if !slices.ContainsFunc(have, func(h []byte) bool { return bytes.Equal(h, k) }) {
			if err := g.keyring.AddKey(k); err != nil {
				g.keyMu.Unlock()
				return fmt.Errorf("%w: %w", ErrKey, err)
			}
			changed = true
		}
	}
	if !bytes.Equal(g.keyring.GetPrimaryKey(), keys[0]) {
		if err := g.keyring.UseKey(keys[0]); err != nil {
			g.keyMu.Unlock()
			return fmt.Errorf("%w: %w", ErrKey, err)
		}
		changed = true
	}
	for _, h := range g.keyring.GetKeys() {
		if !slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(h, k) }) {
			if err := g.keyring.RemoveKey(h); err != nil {
				g.keyMu.Unlock()
				return fmt.Errorf("%w: %w", ErrKey, err)
			}
			changed = true
		}
	}
	g.keyMu.Unlock()
	if !changed {
		return nil
	}
	g.mu.Lock()
	self := g.self
	g.mu.Unlock()
	g.log.Info("gossip key ring changed", "keys", len(keys), "primary", KeyFingerprint(keys[0]))
	return g.SetMeta(self, timeout)
}

func (g *Gossip) setMeta(w wireMeta, timeout time.Duration) error {
	b, err := encodeMeta(w)
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.meta, g.self = b, w.Meta
	g.mu.Unlock()
	return g.ml.UpdateNode(timeout)
}

// Members is every member this one knows of, including dead and left ones
// (until they rejoin), in no particular order.
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Member, 0, len(g.members))
	for _, m := range g.members {
		out = append(out, *m)
	}
	return out
}

// Member returns the named member.
func (g *Gossip) Member(name string) (Member, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.members[name]
	if !ok {
		return Member{}, false
	}
	return *m, true
}

// DeadSince reports whether the named member is confirmed dead and since
// when (this member's clock). A member that left gracefully is not dead.
func (g *Gossip) DeadSince(name string) (time.Time, bool) {
	m, ok := g.Member(name)
	if !ok || m.State != StateDead {
		return time.Time{}, false
	}
	return m.Since, true
}

// Key rotation, as Serf does it, in three steps each done on every member
// before the next: InstallKey (the new key also decrypts), UseKey (the new
// key encrypts), RemoveKey (the old key no longer decrypts). Between the
// steps members with either primary key understand each other.

// One rotation at a time: memberlist v0.5.4's Keyring.RemoveKey shifts
// its slice in place, unsynchronised with decryption reading it, unless the
// key removed is the last one; with at most two keys the key that is not in
// use is always last. keyMu serialises the rotation calls (the Keyring's
// own reads in AddKey/UseKey are unlocked).

// InstallKey adds a key that decrypts incoming messages; ErrKey when a
// rotation is already under way (two keys installed).
func (g *Gossip) InstallKey(key []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	g.keyMu.Lock()
	defer g.keyMu.Unlock()
	keys := g.keyring.GetKeys()
	for _, k := range keys {
		if bytes.Equal(k, key) {
			return nil
		}
	}
	if len(keys) >= 2 {
		return fmt.Errorf("%w: a rotation is under way (2 keys installed): finish it with UseKey and RemoveKey first", ErrKey)
	}
	return g.keyring.AddKey(key)
}

// UseKey makes an installed key the one that encrypts.
func (g *Gossip) UseKey(key []byte) error {
	g.keyMu.Lock()
	defer g.keyMu.Unlock()
	if err := g.keyring.UseKey(key); err != nil {
		return fmt.Errorf("%w: %w", ErrKey, err)
	}
	return nil
}

// RemoveKey drops a key that is not the one in use.
func (g *Gossip) RemoveKey(key []byte) error {
	g.keyMu.Lock()
	defer g.keyMu.Unlock()
	if err := g.keyring.RemoveKey(key); err != nil {
		return fmt.Errorf("%w: %w", ErrKey, err)
	}
	return nil
}

// KeyCount is how many keys decrypt (1 outside a rotation).
func (g *Gossip) KeyCount() int { return len(g.keyring.GetKeys()) }

func checkKey(key []byte) error {
	switch len(key) {
	case 16, 24, 32:
		return nil
	case 0:
		return fmt.Errorf("%w: missing (every member needs the cluster's gossip key)", ErrKey)
	}
	return fmt.Errorf("%w: %d bytes, want 16, 24 or 32", ErrKey, len(key))
}

// Leave tells the others this member is going (they see it Left, not
// Dead) and stops it.
func (g *Gossip) Leave(timeout time.Duration) error {
	g.mu.Lock()
	self := g.self
	g.mu.Unlock()
	// Say "leaving" first, to each member directly (TCP) and in the
	// metadata (gossiped, for members the direct notice misses), so the
	// others take the departure that follows as Left, not Dead.
	err := g.setMeta(wireMeta{Meta: self, Leaving: true}, timeout)
	var sends sync.WaitGroup
	for _, n := range g.ml.Members() {
		if n.Name == self.Node || n.Name == g.Name() {
			continue
		}
		sends.Go(func() {
			if serr := g.ml.SendReliable(n, append([]byte(leavingPrefix), g.Name()...)); serr != nil {
				g.log.Debug("leave notice not delivered", "member", n.Name, "err", serr)
			}
		})
	}
	sends.Wait()
	if lerr := g.ml.Leave(timeout); err == nil {
		err = lerr
	}
	if serr := g.ml.Shutdown(); err == nil {
		err = serr
	}
	return err
}

// Shutdown stops the member without a goodbye: the others detect it dead.
func (g *Gossip) Shutdown() error { return g.ml.Shutdown() }

func encodeMeta(m wireMeta) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%w: meta: %w", ErrConfig, err)
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("%w: meta is %d bytes encoded, limit %d", ErrConfig, len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// set records a member's state from a memberlist notification; gone is a
// departure (Dead, or Left when the member said it is leaving).
func (g *Gossip) set(n *memberlist.Node, gone bool) {
	var meta wireMeta
	if len(n.Meta) > 0 {
		if err := json.Unmarshal(n.Meta, &meta); err != nil {
			g.log.Warn("member metadata unreadable", "member", n.Name, "err", err)
		}
	}
	if changed, ok := g.record(n, meta, gone); ok && g.onChange != nil {
		g.onChange(changed)
	}
}

// record keeps what a notification says of a member; ok when its State
// changed (changed is the member then).
func (g *Gossip) record(n *memberlist.Node, meta wireMeta, gone bool) (changed Member, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := StateAlive
	switch {
	case gone && (meta.Leaving || g.leaving[n.Name]):
		st = StateLeft
	case gone:
		st = StateDead
	}
	if !gone {
		delete(g.leaving, n.Name) // back (or never gone): a later departure is judged anew
	}
	m := g.members[n.Name]
	if m == nil {
		m = &Member{Name: n.Name}
		g.members[n.Name] = m
		g.count[StateUnknown]++
	}
	m.Addr, m.Meta = n.Address(), meta.Meta
	if m.State == st {
		return Member{}, false
	}
	g.count[m.State]--
	g.count[st]++
	m.State, m.Since = st, g.now()
	if st == StateDead {
		g.deaths++
	}
	g.log.Info("member "+st.String(), "member", n.Name, "addr", n.Address())
	return *m, true
}

// Stats are counters of this member's view, for metrics.
type Stats struct {
	// Members by State as this member sees them (itself included).
	Alive, Dead, Left int
	// DeathsSeen counts every time a member went Dead in this view since
	// start (a member that refutes and dies again counts twice).
	DeathsSeen uint64
	// Keys is how many keys decrypt (1 outside a key rotation).
	Keys int
}

// Stats counts this member's view now.
func (g *Gossip) Stats() Stats {
	g.mu.Lock()
	s := Stats{DeathsSeen: g.deaths, Alive: g.count[StateAlive], Dead: g.count[StateDead], Left: g.count[StateLeft]}
	g.mu.Unlock()
	s.Keys = g.KeyCount()
	return s
}

// events receives memberlist's membership notifications.
type events Gossip

func (e *events) NotifyJoin(n *memberlist.Node)   { (*Gossip)(e).set(n, false) }
func (e *events) NotifyUpdate(n *memberlist.Node) { (*Gossip)(e).set(n, false) }
func (e *events) NotifyLeave(n *memberlist.Node)  { (*Gossip)(e).set(n, true) }

// delegate hands memberlist this member's metadata and takes leave
// notices.
type delegate Gossip

func (d *delegate) NodeMeta(limit int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.meta) > limit {
		return nil // encodeMeta keeps it within MetaMaxSize
	}
	return append([]byte(nil), d.meta...)
}
func (d *delegate) NotifyMsg(b []byte) {
	name, ok := strings.CutPrefix(string(b), leavingPrefix)
	if !ok || name == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.leaving[name] = true
}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}
