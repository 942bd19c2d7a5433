package agent

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// A projected token is reused until 80 % of its lifetime passed, then
// minted anew; each pod, audience and lifetime has its own; a pod that
// left the node loses its tokens.
func TestTokenCacheRenewsAtEightyPercent(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &tokenCache{now: func() time.Time { return now }}
	minted := 0
	mint := func(context.Context) ([]byte, error) { minted++; return []byte(fmt.Sprint("tok", minted)), nil }
	get := func(uid, aud string) string {
		t.Helper()
		b, err := c.get(context.Background(), uid, aud, 3607, mint)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := get("p1", ""); got != "tok1" {
		t.Fatalf("first: %s", got)
	}
	now = now.Add(time.Duration(0.79 * 3607 * float64(time.Second)))
	if got := get("p1", ""); got != "tok1" {
		t.Errorf("at 79 %%: %s, want the cached tok1", got)
	}
	now = now.Add(time.Duration(0.02 * 3607 * float64(time.Second)))
	if got := get("p1", ""); got != "tok2" {
		t.Errorf("at 81 %%: %s, want a new token", got)
	}
	if got := get("p1", "vault"); got != "tok3" {
		t.Errorf("another audience: %s, want its own token", got)
	}
	if got := get("p2", ""); got != "tok4" {
		t.Errorf("another pod: %s, want its own token", got)
	}
	c.forget(map[string]bool{"p2": true})
	if got := get("p1", ""); got != "tok5" {
		t.Errorf("after the pod left: %s, want a fresh mint", got)
	}
	if got := get("p2", ""); got != "tok4" {
		t.Errorf("a kept pod: %s, want its cached token", got)
	}
	// A failed mint is not cached.
	c2 := &tokenCache{now: func() time.Time { return now }}
	if _, err := c2.get(context.Background(), "p", "", 3607, func(context.Context) ([]byte, error) { return nil, fmt.Errorf("down") }); err == nil {
		t.Fatal("a failed mint returned no error")
	}
	if len(c2.tokens) != 0 {
		t.Errorf("a failed mint was cached: %v", c2.tokens)
	}
}
