package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// ErrCertificateExpired is reported when renewal keeps failing past the
// certificate's expiry: the node can no longer authenticate.
var ErrCertificateExpired = errors.New("certificate has expired")

// Clock is the time source of a Renewer (tests pass a fake).
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// RenewFunc obtains a fresh certificate for the same identity: on a
// worker, JoinClient.Renew against a control node; on a control node,
// CA.Issue locally. It should also persist the new pair in the data dir.
type RenewFunc func(ctx context.Context) (tls.Certificate, error)

// RenewerConfig configures a Renewer.
type RenewerConfig struct {
	// Initial is the certificate in use now.
	Initial tls.Certificate
	// Renew is called when the certificate is due.
	Renew RenewFunc
	// Fraction of the lifetime (NotBefore..NotAfter) after which to renew.
	Fraction float64
	// MinBackoff and MaxBackoff bound the exponential wait between failed
	// attempts.
	MinBackoff, MaxBackoff time.Duration
	// OnError receives every failed attempt (also logged). Use it to raise
	// an alarm or set a health condition; the Renewer keeps trying.
	OnError func(error)
	// OnRenewed is told every new certificate once it is in use (optional).
	OnRenewed func(tls.Certificate)
	Logger    *slog.Logger
	Clock     Clock
}

// DefaultRenewerConfig renews at 2/3 of the lifetime, retrying from 1s
// up to every 5 minutes.
func DefaultRenewerConfig() RenewerConfig {
	return RenewerConfig{Fraction: 2.0 / 3.0, MinBackoff: time.Second, MaxBackoff: 5 * time.Minute, Logger: slog.Default(), Clock: realClock{}}
}

// Renewer keeps a node certificate fresh and hands the current one to TLS
// (it is a CertSource), so renewal needs no restart.
type Renewer struct {
	cfg RenewerConfig
	log *slog.Logger
	mu  sync.RWMutex
	cur tls.Certificate
	id  Identity
	// kick asks Run to renew now (RenewNow).
	kick chan struct{}
}

// NewRenewer checks cfg.
func NewRenewer(cfg RenewerConfig) (*Renewer, error) {
	def := DefaultRenewerConfig()
	if cfg.Renew == nil {
		return nil, errors.New("renewer: Renew is required")
	}
	if cfg.Fraction <= 0 || cfg.Fraction >= 1 {
		cfg.Fraction = def.Fraction
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = def.MinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(def.MaxBackoff, cfg.MinBackoff)
	}
	if cfg.Logger == nil {
		cfg.Logger = def.Logger
	}
	if cfg.Clock == nil {
		cfg.Clock = def.Clock
	}
	leaf, err := leafOf(&cfg.Initial)
	if err != nil {
		return nil, fmt.Errorf("renewer: initial certificate: %w", err)
	}
	id, err := IdentityFromCert(leaf)
	if err != nil {
		return nil, fmt.Errorf("renewer: initial certificate: %w", err)
	}
	return &Renewer{cfg: cfg, log: cfg.Logger.With("component", "cert-renewer", "identity", id.User), cur: cfg.Initial, id: id, kick: make(chan struct{}, 1)}, nil
}

func leafOf(c *tls.Certificate) (*x509.Certificate, error) {
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	if len(c.Certificate) == 0 {
		return nil, errors.New("no certificate")
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil, err
	}
	c.Leaf = leaf
	return leaf, nil
}

// RenewAt is when a certificate is due: NotBefore + fraction of its life.
func RenewAt(cert *x509.Certificate, fraction float64) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotBefore.Add(time.Duration(float64(life) * fraction))
}

// Current returns the certificate in use.
func (r *Renewer) Current() tls.Certificate {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cur
}

// GetCertificate implements CertSource.
func (r *Renewer) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := r.Current()
	return &c, nil
}

// GetClientCertificate implements CertSource.
func (r *Renewer) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	c := r.Current()
	return &c, nil
}

// Run renews the certificate whenever it is due until ctx ends (then it
// returns nil). Failures are reported to OnError and logged, and retried
// with backoff; they never end the loop, since a control plane that comes
// back must find the node still trying.
func (r *Renewer) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	for {
		cur := r.Current()
		wait := RenewAt(cur.Leaf, r.cfg.Fraction).Sub(r.cfg.Clock.Now())
		if backoff > 0 {
			wait = backoff
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-r.cfg.Clock.After(wait):
			case <-r.kick:
			}
		}
		next, err := r.renewOnce(ctx, cur.Leaf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			backoff = min(max(2*backoff, r.cfg.MinBackoff), r.cfg.MaxBackoff)
			r.log.Error("certificate renewal failed", "err", err, "retry_in", backoff)
			if r.cfg.OnError != nil {
				r.cfg.OnError(err)
			}
			continue
		}
		backoff = 0
		r.mu.Lock()
		r.cur = next
		r.mu.Unlock()
		r.log.Info("certificate renewed", "not_after", next.Leaf.NotAfter, "issuer", next.Leaf.Issuer.CommonName, "next_renewal", RenewAt(next.Leaf, r.cfg.Fraction))
		if r.cfg.OnRenewed != nil {
			r.cfg.OnRenewed(next)
		}
	}
}

// RenewNow makes Run renew at once rather than when the certificate is
// due: a CA rotation wants every certificate re-issued by the new CA now,
// not in weeks. Calls while one is pending are merged.
func (r *Renewer) RenewNow() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *Renewer) renewOnce(ctx context.Context, old *x509.Certificate) (tls.Certificate, error) {
	next, err := r.cfg.Renew(ctx)
	if err == nil {
		err = r.check(&next)
	}
	if err != nil {
		if now := r.cfg.Clock.Now(); !now.Before(old.NotAfter) {
			return tls.Certificate{}, fmt.Errorf("renew certificate of %s: %w at %s, so this node cannot authenticate until renewal succeeds: %w",
				r.id.User, ErrCertificateExpired, old.NotAfter.UTC().Format(time.RFC3339), err)
		}
		return tls.Certificate{}, fmt.Errorf("renew certificate of %s (expires %s): %w", r.id.User, old.NotAfter.UTC().Format(time.RFC3339), err)
	}
	return next, nil
}

// check refuses a renewed certificate that would not help: another
// identity, or one already due (renewing it again at once would spin).
func (r *Renewer) check(c *tls.Certificate) error {
	leaf, err := leafOf(c)
	if err != nil {
		return fmt.Errorf("renewed certificate: %w", err)
	}
	id, err := IdentityFromCert(leaf)
	if err != nil {
		return fmt.Errorf("renewed certificate: %w", err)
	}
	if id != r.id {
		return fmt.Errorf("renewed certificate is for %s, not %s", id, r.id)
	}
	if due := RenewAt(leaf, r.cfg.Fraction); !due.After(r.cfg.Clock.Now()) {
		return fmt.Errorf("renewed certificate is already due for renewal (valid until %s; is the CA expiring?)", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}
