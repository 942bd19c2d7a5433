package dashboard

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/skiffhq/skiff/controlplane/pki"
)

// Errors of logging in.
var (
	// ErrLoginRefused: the identity may not use the dashboard.
	ErrLoginRefused = errors.New("login refused")
	// ErrBadToken: a login token that is unknown, already used or expired.
	ErrBadToken = errors.New("login token unknown, used or expired")
)

// PKILogin is the default Config.MayLogin: users (admin or viewer roles)
// may log in; node and control-node certificates, and certificates
// outside Skiff's identity rules, may not.
func PKILogin(cert *x509.Certificate) (Caller, error) {
	id, err := pki.IdentityFromCert(cert)
	if err != nil {
		return Caller{}, fmt.Errorf("%w: %w", ErrLoginRefused, err)
	}
	if id.Role != pki.RoleAdmin && id.Role != pki.RoleViewer {
		return Caller{}, fmt.Errorf("%w: %s may not use the dashboard (only admin and viewer users may)", ErrLoginRefused, id)
	}
	return Caller{User: cert.Subject.CommonName, Groups: append([]string(nil), cert.Subject.Organization...)}, nil
}

// grant is a login token or a session: whom it speaks for, until when.
type grant struct {
	caller  Caller
	expires time.Time
	csrf    string // sessions only
	// sessionEnd (login tokens only) is when the session it opens ends.
	sessionEnd time.Time
	// cert is the certificate that minted the token, checked again
	// (Config.CheckCert) whenever the session is used.
	cert *x509.Certificate
}

// grants holds login tokens or sessions by the SHA-256 of their secret, so
// the map holds nothing a memory dump could replay.
type grants struct {
	mu sync.Mutex
	m  map[[32]byte]*grant
}

func newSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // the runtime's reader does not fail
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func (g *grants) add(now time.Time, gr *grant) string {
	secret := newSecret()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = map[[32]byte]*grant{}
	}
	for k, v := range g.m { // prune: at most one entry per login, so cheap
		if !now.Before(v.expires) {
			delete(g.m, k)
		}
	}
	g.m[sha256.Sum256([]byte(secret))] = gr
	return secret
}

// take removes and returns the grant of secret (a login token: single use,
// refused once expired).
func (g *grants) take(now time.Time, secret string) (*grant, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := sha256.Sum256([]byte(secret))
	gr, ok := g.m[k]
	delete(g.m, k)
	if !ok || !now.Before(gr.expires) {
		return nil, ErrBadToken
	}
	return gr, nil
}

// get returns the live grant of secret (a session).
func (g *grants) get(now time.Time, secret string) (*grant, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := sha256.Sum256([]byte(secret))
	gr, ok := g.m[k]
	if ok && !now.Before(gr.expires) {
		delete(g.m, k)
		return nil, false
	}
	return gr, ok
}

func (g *grants) drop(secret string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.m, sha256.Sum256([]byte(secret)))
}

const (
	sessionCookie = "skiff_dashboard"
	csrfHeader    = "X-Skiff-CSRF"
	// LoginPath is where a login token is traded for a session.
	LoginPath = "/login"
	// TokenPath is the authenticated call that mints a login token.
	TokenPath = "/api/login-token"
)

// LoginToken is TokenPath's answer.
type LoginToken struct {
	URL              string `json:"url"`
	ExpiresInSeconds int    `json:"expiresInSeconds"`
}

// mintToken answers TokenPath: only over a connection with a verified
// client certificate that MayLogin accepts.
func (s *Server) mintToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		http.Error(w, "a login token needs a client certificate signed by the cluster CA (ctl dashboard sends the one of your client config)", http.StatusUnauthorized)
		return
	}
	leaf := r.TLS.VerifiedChains[0][0]
	caller, err := s.cfg.MayLogin(leaf)
	if err != nil {
		s.log.Info("dashboard login refused", "user", leaf.Subject.CommonName, "err", err)
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	now := s.cfg.Now()
	expires := now.Add(s.cfg.TokenTTL)
	// A session never outlives the certificate that opened it.
	sessionEnd := now.Add(s.cfg.SessionTTL)
	if leaf.NotAfter.Before(sessionEnd) {
		sessionEnd = leaf.NotAfter
	}
	tok := s.tokens.add(now, &grant{caller: caller, expires: expires, sessionEnd: sessionEnd, cert: leaf})
	s.log.Info("dashboard login token minted", "user", caller.User)
	u := url.URL{Scheme: "https", Host: r.Host, Path: LoginPath, RawQuery: url.Values{"token": {tok}}.Encode()}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(LoginToken{URL: u.String(), ExpiresInSeconds: int(s.cfg.TokenTTL / time.Second)})
}

// login trades a login token for a session cookie.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	now := s.cfg.Now()
	tok, err := s.tokens.take(now, r.URL.Query().Get("token"))
	if err != nil {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, "%v: run `ctl dashboard` for a new link (a link works once, for %s)\n", err, s.cfg.TokenTTL)
		return
	}
	end := tok.sessionEnd
	secret := s.sessions.add(now, &grant{caller: tok.caller, expires: end, csrf: newSecret(), cert: tok.cert})
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: secret, Path: "/", Expires: end,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	s.log.Info("dashboard session opened", "user", tok.caller.User)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.sessions.drop(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "logged out")
}

// session returns the request's session, or answers 401 and false.
func (s *Server) session(w http.ResponseWriter, r *http.Request) (*grant, bool) {
	why := "not logged in (or the session ended)"
	if c, err := r.Cookie(sessionCookie); err == nil {
		if g, ok := s.sessions.get(s.cfg.Now(), c.Value); ok {
			err := s.stillValid(g)
			if err == nil {
				return g, true
			}
			s.sessions.drop(c.Value)
			why = fmt.Sprintf("session ended: %v", err)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprintf(w, "%s: run `ctl dashboard` and open the link it prints\n", why)
	return nil, false
}

// stillValid asks Config.CheckCert whether the certificate behind a
// session would still be let in (a revocation ends its sessions).
func (s *Server) stillValid(g *grant) error {
	if s.cfg.CheckCert == nil || g.cert == nil {
		return nil
	}
	return s.cfg.CheckCert(g.cert)
}

// checkCSRF refuses a state-changing request that does not carry the
// session's CSRF token, or that comes from another origin. SameSite=Strict
// already keeps the cookie off cross-site requests; this is the second lock.
func checkCSRF(r *http.Request, g *grant) error {
	if r.Method != http.MethodPost {
		return errors.New("actions are POST requests")
	}
	if o := r.Header.Get("Origin"); o != "" && o != "https://"+r.Host {
		return fmt.Errorf("cross-origin request from %q refused", o)
	}
	if subtle.ConstantTimeCompare([]byte(r.Header.Get(csrfHeader)), []byte(g.csrf)) != 1 {
		return fmt.Errorf("missing or wrong %s header (reload the page)", csrfHeader)
	}
	return nil
}
