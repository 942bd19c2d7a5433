package agent

import (
	"context"
	"sync"
	"time"
)

// Projected service account tokens, as kubelet's token manager keeps them:
// a pod's token is minted once and reused until 80 % of its lifetime has
// passed (or less than a refresh interval of it is left), then minted
// anew; the volume refresh (volrefresh.go) writes the new one with the
// atomic ..data switch, so a program reading the file never sees half a
// token. A bound token dies with its pod, so the cache forgets pods that
// left the node.

// tokenRenewAt is the share of a token's lifetime after which it is
// replaced.
const tokenRenewAt = 0.8

type tokenKey struct {
	uid, audience string
	seconds       int64
}

type cachedToken struct {
	token       []byte
	minted, exp time.Time
}

// tokenCache is the agent's tokens by pod. The zero value is ready.
type tokenCache struct {
	mu     sync.Mutex
	tokens map[tokenKey]cachedToken
	now    func() time.Time // nil: time.Now
	// refresh is the volume refresh pace (Config.VolumeRefreshInterval);
	// zero: volumeRefreshInterval.
	refresh time.Duration
}

func (c *tokenCache) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

// fresh reports whether t can still be handed out at now, with volumes
// refreshed every refresh.
func (t cachedToken) fresh(now time.Time, refresh time.Duration) bool {
	life := t.exp.Sub(t.minted)
	renew := t.minted.Add(time.Duration(float64(life) * tokenRenewAt))
	if left := t.exp.Sub(now); left < 2*refresh {
		return false // the next refresh might come too late
	}
	return now.Before(renew)
}

// get returns the cached token of (uid, audience, seconds) while fresh,
// else mints one with mint and caches it. seconds 0 is the API's default
// lifetime (an hour).
func (c *tokenCache) get(ctx context.Context, uid, audience string, seconds int64, mint func(context.Context) ([]byte, error)) ([]byte, error) {
	k := tokenKey{uid, audience, seconds}
	now := c.clock()
	c.mu.Lock()
	t, ok := c.tokens[k]
	c.mu.Unlock()
	refresh := c.refresh
	if refresh <= 0 {
		refresh = volumeRefreshInterval
	}
	if ok && t.fresh(now, refresh) {
		return t.token, nil
	}
	tok, err := mint(ctx)
	if err != nil {
		return nil, err
	}
	life := time.Duration(seconds) * time.Second
	if seconds <= 0 {
		life = time.Hour
	}
	c.mu.Lock()
	if c.tokens == nil {
		c.tokens = map[tokenKey]cachedToken{}
	}
	c.tokens[k] = cachedToken{token: tok, minted: now, exp: now.Add(life)}
	c.mu.Unlock()
	return tok, nil
}

// forget drops the tokens of pods not in keep.
func (c *tokenCache) forget(keep map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.tokens {
		if !keep[k.uid] {
			delete(c.tokens, k)
		}
	}
}
