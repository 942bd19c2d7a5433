package pki

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// A join token is "skiff1.<pin>.<id>.<secret>":
//
//	pin     64 hex digits: SHA-256 of the CA's SubjectPublicKeyInfo
//	id      6 characters [a-z0-9]: names the token (not secret)
//	secret  26 characters [a-z2-7] (130 bits): proves possession
//
// Only the id, the role, the times and SHA-256(secret) are stored.
const tokenPrefix = "skiff1"

const (
	tokenIDLen     = 6
	tokenSecretLen = 26
	idAlphabet     = "abcdefghijklmnopqrstuvwxyz0123456789"
	secretAlphabet = "abcdefghijklmnopqrstuvwxyz234567"
)

// JoinRole is what a join token lets its holder become.
type JoinRole string

// Join roles.
const (
	JoinControl JoinRole = "control"
	JoinWorker  JoinRole = "worker"
)

// ParseJoinRole accepts "control" and "worker".
func ParseJoinRole(s string) (JoinRole, error) {
	switch JoinRole(s) {
	case JoinControl, JoinWorker:
		return JoinRole(s), nil
	}
	return "", fmt.Errorf("%w: role %q: want %q or %q", ErrBadToken, s, JoinControl, JoinWorker)
}

// Token errors. Their messages are shown to operators as they are.
var (
	ErrBadToken     = errors.New("malformed join token")
	ErrTokenUnknown = errors.New("join token is unknown")
	ErrTokenRevoked = errors.New("join token was revoked")
	ErrTokenExpired = errors.New("join token has expired")
	ErrTokenRole    = errors.New("join token does not allow this role")
	// ErrTokenInvalid answers a join whose token id is unknown OR whose
	// secret is wrong, with one message for both: a caller who guesses ids
	// must not learn which ids exist.
	ErrTokenInvalid = errors.New("join token is not valid on this cluster")
	// ErrTokenNode means a node-bound token (`ctl token create --node`) was
	// used to join under another name.
	ErrTokenNode = errors.New("join token is bound to another node")
)

// Token is a parsed join token.
type Token struct {
	Pin    string
	ID     string
	Secret string
}

func (t Token) String() string {
	return strings.Join([]string{tokenPrefix, t.Pin, t.ID, t.Secret}, ".")
}

// ParseToken splits and checks a token string; errors say which part is
// wrong without echoing the secret.
func ParseToken(s string) (Token, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 4 {
		return Token{}, fmt.Errorf("%w: want %s.<pin>.<id>.<secret> (4 parts separated by '.'), got %d parts", ErrBadToken, tokenPrefix, len(parts))
	}
	if parts[0] != tokenPrefix {
		return Token{}, fmt.Errorf("%w: prefix %q, want %q", ErrBadToken, parts[0], tokenPrefix)
	}
	t := Token{Pin: parts[1], ID: parts[2], Secret: parts[3]}
	if err := checkPin(t.Pin); err != nil {
		return Token{}, err
	}
	if err := checkTokenID(t.ID); err != nil {
		return Token{}, err
	}
	if len(t.Secret) != tokenSecretLen || !onlyFrom(t.Secret, secretAlphabet) {
		return Token{}, fmt.Errorf("%w: secret must be %d characters of a-z and 2-7", ErrBadToken, tokenSecretLen)
	}
	return t, nil
}

func checkPin(pin string) error {
	if len(pin) != 64 || !onlyFrom(pin, "0123456789abcdef") {
		return fmt.Errorf("%w: CA pin %q must be 64 lower-case hex digits (SHA-256)", ErrBadToken, pin)
	}
	return nil
}

func checkTokenID(id string) error {
	if len(id) != tokenIDLen || !onlyFrom(id, idAlphabet) {
		return fmt.Errorf("%w: id %q must be %d characters of a-z and 0-9", ErrBadToken, id, tokenIDLen)
	}
	return nil
}

func onlyFrom(s, alphabet string) bool {
	for _, c := range s {
		if !strings.ContainsRune(alphabet, c) {
			return false
		}
	}
	return true
}

func randomString(n int, alphabet string) (string, error) {
	// Rejection sampling keeps the distribution uniform.
	limit := 256 - 256%len(alphabet)
	out := make([]byte, 0, n)
	buf := make([]byte, n*2)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("random: %w", err)
		}
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out), nil
}

// hashSecret is SHA-256 in hex. The secret has 130 random bits, so a fast
// hash is enough: there is no dictionary to guess from.
func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// TokenRecord is what the registry stores for a token.
type TokenRecord struct {
	ID          string   `json:"id"`
	Role        JoinRole `json:"role"`
	SecretHash  string   `json:"secretHash"`
	Description string   `json:"description,omitempty"`
	// Node, when set, binds the token to one worker node name: it joins
	// only under that name, and may do so while a live Node holds it (to
	// re-join a machine). Empty for ordinary tokens.
	Node      string     `json:"node,omitempty"`
	CreatedAt time.Time  `json:"createdAt"`
	ExpiresAt time.Time  `json:"expiresAt"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
}

// State is "valid", "expired" or "revoked" at now.
func (r TokenRecord) State(now time.Time) string {
	switch {
	case r.RevokedAt != nil:
		return "revoked"
	case !now.Before(r.ExpiresAt):
		return "expired"
	}
	return "valid"
}

// TokenStore persists token records keyed by id. The control plane backs
// it with the replicated store (/skiff/tokens/<id>); MemoryTokenStore is
// for tests and single-process use.
type TokenStore interface {
	// Get returns found=false (and no error) when id does not exist.
	Get(ctx context.Context, id string) (rec TokenRecord, found bool, err error)
	Put(ctx context.Context, rec TokenRecord) error
	// Delete of a missing id is not an error.
	Delete(ctx context.Context, id string) error
	List(ctx context.Context) ([]TokenRecord, error)
}

// TokensConfig configures a token registry.
type TokensConfig struct {
	// Pin of the cluster CA, written into every token created.
	Pin string
	// CurrentPin, when set, is asked for the pin of each new token instead
	// (the signer of a CA bundle: tokens made during and after a CA
	// rotation pin the new CA).
	CurrentPin func() string
	// DefaultTTL applies when Create gets none; MaxTTL caps any TTL.
	DefaultTTL time.Duration
	MaxTTL     time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultTokensConfig: tokens live 24h by default, at most 30 days. Pin
// must still be set.
func DefaultTokensConfig() TokensConfig {
	return TokensConfig{DefaultTTL: 24 * time.Hour, MaxTTL: 30 * 24 * time.Hour, Now: time.Now}
}

// Tokens is the join token registry.
type Tokens struct {
	store TokenStore
	cfg   TokensConfig
}

// NewTokens returns a registry over store.
func NewTokens(store TokenStore, cfg TokensConfig) (*Tokens, error) {
	if store == nil {
		return nil, errors.New("tokens: store is required")
	}
	if err := checkPin(cfg.Pin); err != nil {
		return nil, fmt.Errorf("tokens config: %w", err)
	}
	def := DefaultTokensConfig()
	if cfg.DefaultTTL <= 0 {
		cfg.DefaultTTL = def.DefaultTTL
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = def.MaxTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Tokens{store: store, cfg: cfg}, nil
}

// CreateTokenOptions describe a new token.
type CreateTokenOptions struct {
	Role JoinRole
	// TTL from now; zero means the configured default.
	TTL         time.Duration
	Description string
	// Node binds a worker token to one node name (see TokenRecord.Node).
	Node string
}

// Create makes and stores a token. The returned Token is the only place
// the secret ever appears.
func (t *Tokens) Create(ctx context.Context, opts CreateTokenOptions) (Token, TokenRecord, error) {
	if _, err := ParseJoinRole(string(opts.Role)); err != nil {
		return Token{}, TokenRecord{}, err
	}
	if opts.Node != "" {
		if opts.Role != JoinWorker {
			return Token{}, TokenRecord{}, fmt.Errorf("%w: node %q: only worker tokens are bound to a node (a control node re-joins after `ctl member remove`)", ErrBadToken, opts.Node)
		}
		if err := checkName("node", opts.Node); err != nil {
			return Token{}, TokenRecord{}, fmt.Errorf("%w: %w", ErrBadToken, err)
		}
	}
	ttl := opts.TTL
	if ttl == 0 {
		ttl = t.cfg.DefaultTTL
	}
	if ttl < 0 || ttl > t.cfg.MaxTTL {
		return Token{}, TokenRecord{}, fmt.Errorf("%w: ttl %s must be positive and at most %s", ErrBadToken, ttl, t.cfg.MaxTTL)
	}
	var id string
	for attempt := 0; ; attempt++ {
		var err error
		if id, err = randomString(tokenIDLen, idAlphabet); err != nil {
			return Token{}, TokenRecord{}, err
		}
		_, found, err := t.store.Get(ctx, id)
		if err != nil {
			return Token{}, TokenRecord{}, fmt.Errorf("create token: %w", err)
		}
		if !found {
			break
		}
		if attempt == 10 {
			return Token{}, TokenRecord{}, errors.New("create token: no free token id after 10 tries")
		}
	}
	secret, err := randomString(tokenSecretLen, secretAlphabet)
	if err != nil {
		return Token{}, TokenRecord{}, err
	}
	now := t.cfg.Now()
	rec := TokenRecord{ID: id, Role: opts.Role, SecretHash: hashSecret(secret), Description: opts.Description, Node: opts.Node,
		CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := t.store.Put(ctx, rec); err != nil {
		return Token{}, TokenRecord{}, fmt.Errorf("create token %s: %w", id, err)
	}
	pin := t.cfg.Pin
	if t.cfg.CurrentPin != nil {
		pin = t.cfg.CurrentPin()
	}
	return Token{Pin: pin, ID: id, Secret: secret}, rec, nil
}

// List returns every stored token, oldest first.
func (t *Tokens) List(ctx context.Context) ([]TokenRecord, error) {
	recs, err := t.store.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	sort.Slice(recs, func(i, j int) bool {
		if !recs[i].CreatedAt.Equal(recs[j].CreatedAt) {
			return recs[i].CreatedAt.Before(recs[j].CreatedAt)
		}
		return recs[i].ID < recs[j].ID
	})
	return recs, nil
}

// Revoke marks a token revoked (kept so that its use is refused as
// "revoked", not "unknown"; Prune removes it later). Revoking twice is
// not an error.
func (t *Tokens) Revoke(ctx context.Context, id string) error {
	if err := checkTokenID(id); err != nil {
		return err
	}
	rec, found, err := t.store.Get(ctx, id)
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	if !found {
		return fmt.Errorf("%w: %q (see `ctl token list`)", ErrTokenUnknown, id)
	}
	if rec.RevokedAt != nil {
		return nil
	}
	now := t.cfg.Now()
	rec.RevokedAt = &now
	if err := t.store.Put(ctx, rec); err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	return nil
}

// unknownTokenHash stands in for the stored hash of an id that does not
// exist, so that an unknown id costs the same hash and comparison as a
// wrong secret.
var unknownTokenHash = hashSecret("no such token")

// Validate checks a presented token id and secret for a join as role. An
// unknown id and a wrong secret get the same error (ErrTokenInvalid, same
// message) after the same work, so a caller who knows only an id learns
// nothing about the token, not even that it exists.
func (t *Tokens) Validate(ctx context.Context, id, secret string, role JoinRole) (TokenRecord, error) {
	if err := checkTokenID(id); err != nil {
		return TokenRecord{}, err
	}
	rec, found, err := t.store.Get(ctx, id)
	if err != nil {
		return TokenRecord{}, fmt.Errorf("validate token %s: %w", id, err)
	}
	want := rec.SecretHash
	if !found {
		want = unknownTokenHash
	}
	if subtle.ConstantTimeCompare([]byte(hashSecret(secret)), []byte(want)) != 1 || !found {
		return TokenRecord{}, fmt.Errorf("%w: unknown token id or wrong secret; copy the whole token printed by `ctl token create`, or create a new one", ErrTokenInvalid)
	}
	now := t.cfg.Now()
	if rec.RevokedAt != nil {
		return TokenRecord{}, fmt.Errorf("%w: %q was revoked at %s; create a new one with `ctl token create`", ErrTokenRevoked, id, rec.RevokedAt.UTC().Format(time.RFC3339))
	}
	if !now.Before(rec.ExpiresAt) {
		return TokenRecord{}, fmt.Errorf("%w: %q expired at %s; create a new one with `ctl token create`", ErrTokenExpired, id, rec.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if rec.Role != role {
		return TokenRecord{}, fmt.Errorf("%w: %q is a %s token, the node asked to join as %s", ErrTokenRole, id, rec.Role, role)
	}
	return rec, nil
}

// Prune deletes tokens that expired or were revoked more than keep ago,
// and returns how many it deleted.
func (t *Tokens) Prune(ctx context.Context, keep time.Duration) (int, error) {
	recs, err := t.store.List(ctx)
	if err != nil {
		return 0, fmt.Errorf("prune tokens: %w", err)
	}
	cutoff := t.cfg.Now().Add(-keep)
	n := 0
	for _, r := range recs {
		end := r.ExpiresAt
		if r.RevokedAt != nil && r.RevokedAt.Before(end) {
			end = *r.RevokedAt
		}
		if end.Before(cutoff) {
			if err := t.store.Delete(ctx, r.ID); err != nil {
				return n, fmt.Errorf("prune token %s: %w", r.ID, err)
			}
			n++
		}
	}
	return n, nil
}

// MemoryTokenStore is a TokenStore in memory.
type MemoryTokenStore struct {
	mu   sync.Mutex
	recs map[string]TokenRecord
}

// NewMemoryTokenStore returns an empty store.
func NewMemoryTokenStore() *MemoryTokenStore {
	return &MemoryTokenStore{recs: map[string]TokenRecord{}}
}

// Get implements TokenStore.
func (m *MemoryTokenStore) Get(_ context.Context, id string) (TokenRecord, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.recs[id]
	return r, ok, nil
}

// Put implements TokenStore.
func (m *MemoryTokenStore) Put(_ context.Context, rec TokenRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs[rec.ID] = rec
	return nil
}

// Delete implements TokenStore.
func (m *MemoryTokenStore) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.recs, id)
	return nil
}

// List implements TokenStore.
func (m *MemoryTokenStore) List(context.Context) ([]TokenRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]TokenRecord, 0, len(m.recs))
	for _, r := range m.recs {
		out = append(out, r)
	}
	return out, nil
}
