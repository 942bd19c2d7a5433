package rbac

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"
	"time"
)

// A token is refused when expired, for another audience, signed by
// another cluster's key, or once its pod is gone or replaced (new UID).
func TestTokensVerify(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pods := map[string]string{"shop/web": "uid-1"}
	lookup := func(_ context.Context, ns, name string) (string, string, bool, error) {
		uid, ok := pods[ns+"/"+name]
		return uid, "robot", ok, nil
	}
	mk := func(k *ecdsa.PrivateKey) *Tokens {
		return NewTokens(func() (*ecdsa.PrivateKey, []*ecdsa.PrivateKey) { return k, []*ecdsa.PrivateKey{k} }, lookup)
	}
	tokens := mk(key)
	now := time.Unix(1_800_000_000, 0)
	tokens.now = func() time.Time { return now }
	pod := PodRef{Namespace: "shop", Name: "web", UID: "uid-1", ServiceAccount: "robot"}
	tok, exp, err := tokens.Mint(pod, "", 0)
	if err != nil || !exp.Equal(now.Add(time.Hour)) {
		t.Fatalf("mint: %v, expiry %s", err, exp)
	}
	v, err := tokens.Verify(context.Background(), tok)
	if err != nil || v.User != "system:serviceaccount:shop:robot" || len(v.Groups) != 3 || v.Groups[1] != "system:serviceaccounts:shop" {
		t.Fatalf("verify: %+v, %v", v, err)
	}
	if _, err := mk(other).Verify(context.Background(), tok); !errors.Is(err, ErrBadToken) {
		t.Errorf("another cluster's key: %v", err)
	}
	vault, _, _ := tokens.Mint(pod, "vault", 0)
	if _, err := tokens.Verify(context.Background(), vault); !errors.Is(err, ErrBadToken) {
		t.Errorf("audience vault: %v", err)
	}
	if _, _, err := tokens.Mint(pod, "", time.Minute); !errors.Is(err, ErrBadToken) {
		t.Errorf("a 1 minute token: %v", err)
	}
	now = now.Add(time.Hour)
	if _, err := tokens.Verify(context.Background(), tok); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("at expiry: %v", err)
	}
	now = now.Add(-30 * time.Minute)
	pods["shop/web"] = "uid-2"
	if _, err := tokens.Verify(context.Background(), tok); !errors.Is(err, ErrPodGone) {
		t.Errorf("pod replaced: %v", err)
	}
	delete(pods, "shop/web")
	if _, err := tokens.Verify(context.Background(), tok); !errors.Is(err, ErrPodGone) {
		t.Errorf("pod deleted: %v", err)
	}
	if _, err := tokens.Verify(context.Background(), "a.b"); !errors.Is(err, ErrBadToken) {
		t.Errorf("garbage: %v", err)
	}
}
