package pki

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

type fakeNow struct{ t time.Time }

func (f *fakeNow) now() time.Time { return f.t }

func newTestTokens(t *testing.T) (*Tokens, *MemoryTokenStore, *fakeNow) {
	t.Helper()
	clock := &fakeNow{t: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)}
	store := NewMemoryTokenStore()
	cfg := DefaultTokensConfig()
	cfg.Pin = strings.Repeat("ab", 32)
	cfg.Now = clock.now
	tok, err := NewTokens(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tok, store, clock
}

func TestTokenCreateParseValidate(t *testing.T) {
	ctx := context.Background()
	tokens, store, _ := newTestTokens(t)
	tok, rec, err := tokens.Create(ctx, CreateTokenOptions{Role: JoinWorker, Description: "rack 3"})
	if err != nil {
		t.Fatal(err)
	}
	s := tok.String()
	if !strings.HasPrefix(s, "skiff1."+strings.Repeat("ab", 32)+".") {
		t.Fatalf("token %q", s)
	}
	parsed, err := ParseToken(" " + s + "\n")
	if err != nil || parsed != tok {
		t.Fatalf("ParseToken = %+v, %v", parsed, err)
	}
	stored, found, _ := store.Get(ctx, tok.ID)
	if !found || stored.SecretHash == "" || strings.Contains(stored.SecretHash, tok.Secret) {
		t.Fatalf("stored %+v: the secret must be stored only as a hash", stored)
	}
	if rec.ExpiresAt.Sub(rec.CreatedAt) != 24*time.Hour {
		t.Fatalf("default TTL %s", rec.ExpiresAt.Sub(rec.CreatedAt))
	}
	if _, err := tokens.Validate(ctx, tok.ID, tok.Secret, JoinWorker); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	// Tokens are reusable until they expire (many workers, one token).
	if _, err := tokens.Validate(ctx, tok.ID, tok.Secret, JoinWorker); err != nil {
		t.Fatalf("second Validate: %v", err)
	}
}

func TestTokenValidateErrors(t *testing.T) {
	ctx := context.Background()
	tokens, _, clock := newTestTokens(t)
	worker, _, _ := tokens.Create(ctx, CreateTokenOptions{Role: JoinWorker, TTL: time.Hour})
	revoked, _, _ := tokens.Create(ctx, CreateTokenOptions{Role: JoinControl})
	if err := tokens.Revoke(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	if err := tokens.Revoke(ctx, revoked.ID); err != nil {
		t.Fatalf("second revoke: %v", err)
	}
	cases := []struct {
		name         string
		id, secret   string
		role         JoinRole
		advance      time.Duration
		want         error
		wantInMesage string
	}{
		{"unknown", "zzzzzz", worker.Secret, JoinWorker, 0, ErrTokenInvalid, "ctl token create"},
		{"bad secret", worker.ID, strings.Repeat("a", tokenSecretLen), JoinWorker, 0, ErrTokenInvalid, "unknown token id or wrong secret"},
		{"bad secret of revoked token reveals nothing", revoked.ID, worker.Secret, JoinControl, 0, ErrTokenInvalid, ""},
		{"revoked", revoked.ID, revoked.Secret, JoinControl, 0, ErrTokenRevoked, "revoked at 2026-11-21T12:00:00Z"},
		{"worker token for control", worker.ID, worker.Secret, JoinControl, 0, ErrTokenRole, "is a worker token"},
		{"expired", worker.ID, worker.Secret, JoinWorker, time.Hour, ErrTokenExpired, "expired at 2026-11-21T13:00:00Z"},
		{"malformed id", "ABC", worker.Secret, JoinWorker, 0, ErrBadToken, `"ABC"`},
	}
	for _, c := range cases {
		clock.t = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC).Add(c.advance)
		_, err := tokens.Validate(ctx, c.id, c.secret, c.role)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.wantInMesage) {
			t.Errorf("%s: %v, want %v containing %q", c.name, err, c.want, c.wantInMesage)
		}
		if err != nil && strings.Contains(err.Error(), worker.Secret) {
			t.Errorf("%s: error echoes the secret", c.name)
		}
	}
}

func TestTokenListRevokePrune(t *testing.T) {
	ctx := context.Background()
	tokens, _, clock := newTestTokens(t)
	a, _, _ := tokens.Create(ctx, CreateTokenOptions{Role: JoinWorker, TTL: time.Hour})
	clock.t = clock.t.Add(time.Minute)
	b, _, _ := tokens.Create(ctx, CreateTokenOptions{Role: JoinControl, TTL: 48 * time.Hour})
	if err := tokens.Revoke(ctx, "nonexi"); !errors.Is(err, ErrTokenUnknown) {
		t.Fatalf("revoke unknown: %v", err)
	}
	list, err := tokens.List(ctx)
	if err != nil || len(list) != 2 || list[0].ID != a.ID || list[1].ID != b.ID {
		t.Fatalf("List = %+v %v", list, err)
	}
	clock.t = clock.t.Add(2 * time.Hour)
	if list[0].State(clock.t) != "expired" || list[1].State(clock.t) != "valid" {
		t.Fatalf("states %s %s", list[0].State(clock.t), list[1].State(clock.t))
	}
	n, err := tokens.Prune(ctx, 30*time.Minute)
	if err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v", n, err)
	}
	if _, err := tokens.Validate(ctx, a.ID, a.Secret, JoinWorker); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("pruned token: %v", err)
	}
	if _, err := tokens.Validate(ctx, b.ID, b.Secret, JoinControl); err != nil {
		t.Fatalf("kept token: %v", err)
	}
}

func TestTokenCreateAndParseRefuse(t *testing.T) {
	ctx := context.Background()
	tokens, _, _ := newTestTokens(t)
	if _, _, err := tokens.Create(ctx, CreateTokenOptions{Role: "admin"}); !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), `"admin"`) {
		t.Errorf("bad role: %v", err)
	}
	if _, _, err := tokens.Create(ctx, CreateTokenOptions{Role: JoinWorker, TTL: 365 * 24 * time.Hour}); !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), "at most") {
		t.Errorf("too long TTL: %v", err)
	}
	good, _, _ := tokens.Create(ctx, CreateTokenOptions{Role: JoinWorker})
	for _, c := range []struct{ in, want string }{
		{"abc", "4 parts"},
		{"skiff2." + good.Pin + "." + good.ID + "." + good.Secret, `prefix "skiff2"`},
		{"skiff1.abcd." + good.ID + "." + good.Secret, "64 lower-case hex"},
		{"skiff1." + good.Pin + ".AB." + good.Secret, `id "AB"`},
		{"skiff1." + good.Pin + "." + good.ID + ".short", "secret must be"},
	} {
		if _, err := ParseToken(c.in); !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseToken(%q) = %v, want %q", c.in, err, c.want)
		}
	}
	if _, err := NewTokens(NewMemoryTokenStore(), TokensConfig{Pin: "x"}); !errors.Is(err, ErrBadToken) {
		t.Errorf("bad pin config: %v", err)
	}
}

// The replicated store keeps records as JSON; a round trip must keep
// every field the registry decides on.
func TestTokenRecordJSONRoundTrip(t *testing.T) {
	ctx := context.Background()
	tokens, store, _ := newTestTokens(t)
	tok, _, _ := tokens.Create(ctx, CreateTokenOptions{Role: JoinControl, Description: "third control node"})
	if err := tokens.Revoke(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	rec, _, _ := store.Get(ctx, tok.ID)
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	var back TokenRecord
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.ID != rec.ID || back.Role != rec.Role || back.SecretHash != rec.SecretHash || back.Description != rec.Description ||
		!back.CreatedAt.Equal(rec.CreatedAt) || !back.ExpiresAt.Equal(rec.ExpiresAt) || back.RevokedAt == nil || !back.RevokedAt.Equal(*rec.RevokedAt) {
		t.Fatalf("round trip:\n%+v\n%+v", rec, back)
	}
	if strings.Contains(string(b), tok.Secret) {
		t.Fatal("JSON record contains the secret")
	}
}
