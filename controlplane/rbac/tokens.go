package rbac

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/skiffhq/skiff/controlplane/authz"
)

// Token errors; the API answers Unauthenticated for each.
var (
	ErrBadToken     = errors.New("invalid service account token")
	ErrTokenExpired = errors.New("service account token expired")
	ErrPodGone      = errors.New("the pod the service account token is bound to is gone")
)

// APIAudience is the audience the API accepts (and tokens get by default).
const APIAudience = "skiff"

const (
	tokenIssuer = "skiff"
	// DefaultTokenLifetime, MinTokenLifetime and MaxTokenLifetime bound
	// expirationSeconds (Kubernetes' minimum is 10 minutes).
	DefaultTokenLifetime = time.Hour
	MinTokenLifetime     = 10 * time.Minute
	MaxTokenLifetime     = 24 * time.Hour
	// MinTokenLifetimeFloor bounds what SetMinLifetime accepts: a token
	// must outlive a few of the agents' refreshes (tests and short-lived
	// clusters lower the 10-minute minimum, never to nothing).
	MinTokenLifetimeFloor = 10 * time.Second
)

// SigningKeys are the CA keys tokens are signed with (the current one)
// and verified against (every CA key this node holds).
type SigningKeys func() (current *ecdsa.PrivateKey, all []*ecdsa.PrivateKey)

// PodRef is what a token is bound to.
type PodRef struct {
	Namespace, Name, UID string
	ServiceAccount       string
}

// PodLookup finds a pod's UID and service account on this control node
// (its local store: no Raft round per request); found is false when the
// pod does not exist.
type PodLookup func(ctx context.Context, namespace, name string) (uid, serviceAccount string, found bool, err error)

// Tokens mints and verifies service account tokens.
type Tokens struct {
	keys SigningKeys
	pods PodLookup
	now  func() time.Time
	// min is the shortest expirationSeconds accepted (MinTokenLifetime
	// unless SetMinLifetime lowered it).
	min time.Duration
}

// SetMinLifetime sets the shortest token lifetime Mint accepts, between
// MinTokenLifetimeFloor and DefaultTokenLifetime; 0 keeps MinTokenLifetime.
// Call it before the tokens are used.
func (t *Tokens) SetMinLifetime(d time.Duration) error {
	if d == 0 {
		return nil
	}
	if d < MinTokenLifetimeFloor || d > DefaultTokenLifetime {
		return fmt.Errorf("%w: minimum service account token lifetime %s: must be between %s and %s", ErrBadToken, d, MinTokenLifetimeFloor, DefaultTokenLifetime)
	}
	t.min = d
	return nil
}

// NewTokens returns the token signer and verifier.
func NewTokens(keys SigningKeys, pods PodLookup) *Tokens {
	return &Tokens{keys: keys, pods: pods, now: time.Now, min: MinTokenLifetime}
}

// tokenKey derives the token signing key from a CA key. A separate key
// (not the CA key itself) so a token can never be mistaken for anything
// the CA signs; derived, so every control node holding the CA key has it
// without another secret to replicate. A CA rotation changes it: tokens
// signed before are refused once the old CA key is gone, and the agent
// fetches new ones (they expire within a day anyway).
func tokenKey(ca *ecdsa.PrivateKey) (ed25519.PrivateKey, error) {
	secret, err := ca.Bytes()
	if err != nil {
		return nil, err
	}
	seed, err := hkdf.Key(sha256.New, secret, nil, "skiff service account token signing key v1", ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

type tokenHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
}

type tokenClaims struct {
	Issuer    string    `json:"iss"`
	Subject   string    `json:"sub"`
	Audience  []string  `json:"aud"`
	Expiry    int64     `json:"exp"`
	IssuedAt  int64     `json:"iat"`
	NotBefore int64     `json:"nbf"`
	K8s       k8sClaims `json:"kubernetes.io"`
}

type k8sClaims struct {
	Namespace      string  `json:"namespace"`
	Pod            nameUID `json:"pod"`
	ServiceAccount nameUID `json:"serviceaccount"`
}

type nameUID struct {
	Name string `json:"name"`
	UID  string `json:"uid,omitempty"`
}

var b64 = base64.RawURLEncoding

// Mint signs a token for pod's service account, for audience (default
// APIAudience), valid for lifetime (0: DefaultTokenLifetime).
func (t *Tokens) Mint(pod PodRef, audience string, lifetime time.Duration) (string, time.Time, error) {
	if lifetime == 0 {
		lifetime = DefaultTokenLifetime
	}
	if lifetime < t.min || lifetime > MaxTokenLifetime {
		return "", time.Time{}, fmt.Errorf("%w: expirationSeconds %d: must be between %d and %d", ErrBadToken, int64(lifetime/time.Second), int64(t.min/time.Second), int64(MaxTokenLifetime/time.Second))
	}
	if audience == "" {
		audience = APIAudience
	}
	cur, _ := t.keys()
	if cur == nil {
		return "", time.Time{}, errors.New("this node holds no CA key to sign tokens with")
	}
	key, err := tokenKey(cur)
	if err != nil {
		return "", time.Time{}, err
	}
	now := t.now()
	exp := now.Add(lifetime)
	claims := tokenClaims{Issuer: tokenIssuer, Subject: authz.ServiceAccountUser(pod.Namespace, pod.ServiceAccount),
		Audience: []string{audience}, Expiry: exp.Unix(), IssuedAt: now.Unix(), NotBefore: now.Unix(),
		K8s: k8sClaims{Namespace: pod.Namespace, Pod: nameUID{Name: pod.Name, UID: pod.UID}, ServiceAccount: nameUID{Name: pod.ServiceAccount}}}
	h, _ := json.Marshal(tokenHeader{Alg: "EdDSA", Typ: "JWT"})
	c, err := json.Marshal(claims)
	if err != nil {
		return "", time.Time{}, err
	}
	signing := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	sig := ed25519.Sign(key, []byte(signing))
	return signing + "." + b64.EncodeToString(sig), exp, nil
}

// Verified is who a valid token speaks for.
type Verified struct {
	User   string
	Groups []string
	Pod    PodRef
	Expiry time.Time
}

// Verify checks a token's signature, issuer, audience (APIAudience) and
// expiry, then that its pod still exists with the same UID and service
// account.
func (t *Tokens) Verify(ctx context.Context, token string) (Verified, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Verified{}, fmt.Errorf("%w: not a JWT (want three dot-separated parts)", ErrBadToken)
	}
	var h tokenHeader
	if err := decodePart(parts[0], &h); err != nil || h.Alg != "EdDSA" {
		return Verified{}, fmt.Errorf("%w: header: want alg EdDSA", ErrBadToken)
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return Verified{}, fmt.Errorf("%w: signature encoding", ErrBadToken)
	}
	_, all := t.keys()
	good := false
	for _, k := range all {
		key, err := tokenKey(k)
		if err == nil && ed25519.Verify(key.Public().(ed25519.PublicKey), []byte(parts[0]+"."+parts[1]), sig) {
			good = true
			break
		}
	}
	if !good {
		return Verified{}, fmt.Errorf("%w: signature not made by this cluster", ErrBadToken)
	}
	var c tokenClaims
	if err := decodePart(parts[1], &c); err != nil {
		return Verified{}, fmt.Errorf("%w: claims: %v", ErrBadToken, err)
	}
	now := t.now()
	if c.Issuer != tokenIssuer || !slices.Contains(c.Audience, APIAudience) {
		return Verified{}, fmt.Errorf("%w: issuer %q, audience %q: the API accepts audience %q", ErrBadToken, c.Issuer, c.Audience, APIAudience)
	}
	if now.Unix() >= c.Expiry {
		return Verified{}, fmt.Errorf("%w at %s", ErrTokenExpired, time.Unix(c.Expiry, 0).UTC().Format(time.RFC3339))
	}
	if now.Unix()+60 < c.NotBefore {
		return Verified{}, fmt.Errorf("%w: not valid before %s", ErrBadToken, time.Unix(c.NotBefore, 0).UTC().Format(time.RFC3339))
	}
	ns, sa := c.K8s.Namespace, c.K8s.ServiceAccount.Name
	if c.Subject != authz.ServiceAccountUser(ns, sa) || c.K8s.Pod.Name == "" || c.K8s.Pod.UID == "" {
		return Verified{}, fmt.Errorf("%w: claims do not name a pod and its service account", ErrBadToken)
	}
	uid, podSA, found, err := t.pods(ctx, ns, c.K8s.Pod.Name)
	if err != nil {
		return Verified{}, err
	}
	if !found || uid != c.K8s.Pod.UID || podSA != sa {
		return Verified{}, fmt.Errorf("%w: pod %s/%s (uid %s)", ErrPodGone, ns, c.K8s.Pod.Name, c.K8s.Pod.UID)
	}
	return Verified{User: c.Subject, Groups: authz.ServiceAccountGroups(ns),
		Pod: PodRef{Namespace: ns, Name: c.K8s.Pod.Name, UID: uid, ServiceAccount: sa}, Expiry: time.Unix(c.Expiry, 0)}, nil
}

func decodePart(s string, v any) error {
	b, err := b64.DecodeString(s)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
