package dashboard

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"time"

	storepb "github.com/skiffhq/skiff/proto/store/v1"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// DefaultPort is the dashboard's HTTPS port on every control node.
const DefaultPort = 7448

//go:embed assets
var assets embed.FS

// ClusterSource tells the cluster page about the control members; the
// node's *consensus.Store is one.
type ClusterSource interface {
	Members(ctx context.Context) ([]*storepb.Member, error)
	Revision() int64
}

// Config wires a dashboard.
type Config struct {
	// API is the API as the dashboard calls it: every call carries the
	// session's caller (InProcess.API).
	API apiv1.APIClient
	// Cluster feeds the cluster page; nil shows no members.
	Cluster ClusterSource
	// Usage reports what nodes use; nil shows what their pods request.
	Usage UsageSource
	// Logs streams container logs; nil says they are not available.
	Logs LogSource
	// MayLogin maps the certificate of a login-token request to a caller,
	// or refuses it; nil is PKILogin.
	MayLogin func(*x509.Certificate) (Caller, error)
	// CheckCert, when set, is asked on every use of a session whether the
	// certificate that opened it is still good (the node's deny list and
	// CA set): a revoked user's sessions end at their next request.
	CheckCert func(*x509.Certificate) error
	// TokenTTL is how long a login token may wait to be used; SessionTTL
	// how long a session lasts (at most until its certificate expires).
	TokenTTL, SessionTTL time.Duration
	// Coalesce is how long a page waits after a change for more before it
	// re-renders (a burst of changes costs one render).
	Coalesce time.Duration
	Now      func() time.Time
	Logger   *slog.Logger
}

// DefaultConfig: 60 s login tokens, 8 h sessions, 20 ms coalescing.
func DefaultConfig() Config {
	return Config{TokenTTL: time.Minute, SessionTTL: 8 * time.Hour, Coalesce: 20 * time.Millisecond}
}

// Server is the dashboard's HTTP handler.
type Server struct {
	cfg      Config
	log      *slog.Logger
	mux      *http.ServeMux
	tokens   grants
	sessions grants
	pages    *renderer
}

// New builds a dashboard.
func New(cfg Config) (*Server, error) {
	if cfg.API == nil {
		return nil, errors.New("dashboard: Config.API is required")
	}
	def := DefaultConfig()
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = def.TokenTTL
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = def.SessionTTL
	}
	if cfg.Coalesce <= 0 {
		cfg.Coalesce = def.Coalesce
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MayLogin == nil {
		cfg.MayLogin = PKILogin
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r, err := newRenderer()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "dashboard"), mux: http.NewServeMux(), pages: r}
	static, _ := fs.Sub(assets, "assets/static")
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	s.mux.HandleFunc(TokenPath, s.mintToken)
	s.mux.HandleFunc("GET "+LoginPath, s.login)
	s.mux.HandleFunc("POST /logout", s.logout)
	s.mux.HandleFunc("GET /live", s.live)
	s.mux.HandleFunc("GET /logs/{ns}/{pod}", s.logs)
	s.mux.HandleFunc("POST /action/{verb}", s.action)
	s.mux.HandleFunc("GET /{$}", s.page)
	s.mux.HandleFunc("GET /{page}", s.page)
	s.mux.HandleFunc("GET /pods/{ns}/{name}", s.page)
	return s, nil
}

// ServeHTTP serves the dashboard with security headers on every answer.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	s.mux.ServeHTTP(w, r)
}

// Serve answers HTTPS on lis until ctx ends.
func (s *Server) Serve(ctx context.Context, lis net.Listener, tlsConfig *tls.Config) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hs := &http.Server{Handler: s, TLSConfig: tlsConfig, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext: func(net.Listener) context.Context { return ctx }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if hs.Shutdown(sctx) != nil {
			_ = hs.Close() // live streams do not end on their own
		}
	}()
	err := hs.ServeTLS(lis, "", "")
	cancel()
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("dashboard on %s: %w", lis.Addr(), err)
}
