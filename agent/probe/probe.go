package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ErrNoHandler: a probe names none of exec, httpGet, tcpSocket, grpc.
var ErrNoHandler = errors.New("probe has no exec, httpGet, tcpSocket or grpc handler")

// ExecAction runs a command in the container; exit 0 is success.
type ExecAction struct {
	Command []string `json:"command"`
}

// HTTPHeader is one request header.
type HTTPHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// HTTPGetAction GETs a URL; 200–399 is success.
type HTTPGetAction struct {
	Path   string `json:"path,omitempty"`
	Port   int32  `json:"port"`
	Host   string `json:"host,omitempty"`   // default: the pod IP
	Scheme string `json:"scheme,omitempty"` // HTTP (default) or HTTPS (certificate not verified, as kubelet)
	// HTTPHeaders are added to the request.
	HTTPHeaders []HTTPHeader `json:"httpHeaders,omitempty"`
}

// TCPSocketAction opens a TCP connection; connecting is success.
type TCPSocketAction struct {
	Port int32  `json:"port"`
	Host string `json:"host,omitempty"`
}

// Probe is Kubernetes' Probe. Zero timing fields take Kubernetes' defaults.
type Probe struct {
	Exec      *ExecAction      `json:"exec,omitempty"`
	HTTPGet   *HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket *TCPSocketAction `json:"tcpSocket,omitempty"`
	GRPC      *GRPCAction      `json:"grpc,omitempty"`

	InitialDelaySeconds int32 `json:"initialDelaySeconds,omitempty"`
	TimeoutSeconds      int32 `json:"timeoutSeconds,omitempty"`   // default 1
	PeriodSeconds       int32 `json:"periodSeconds,omitempty"`    // default 10
	SuccessThreshold    int32 `json:"successThreshold,omitempty"` // default 1 (must be 1 for liveness/startup)
	FailureThreshold    int32 `json:"failureThreshold,omitempty"` // default 3
}

// Validate checks one probe; field names are Kubernetes'.
func (p *Probe) Validate(kind Kind) error {
	n := 0
	for _, set := range []bool{p.Exec != nil, p.HTTPGet != nil, p.TCPSocket != nil, p.GRPC != nil} {
		if set {
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("%sProbe: %w", kind, ErrNoHandler)
	}
	if n > 1 {
		return fmt.Errorf("%sProbe: only one of exec, httpGet, tcpSocket, grpc may be set", kind)
	}
	if p.Exec != nil && len(p.Exec.Command) == 0 {
		return fmt.Errorf("%sProbe.exec.command: must not be empty", kind)
	}
	if p.HTTPGet != nil && (p.HTTPGet.Port < 1 || p.HTTPGet.Port > 65535) {
		return fmt.Errorf("%sProbe.httpGet.port: %d out of range", kind, p.HTTPGet.Port)
	}
	if p.TCPSocket != nil && (p.TCPSocket.Port < 1 || p.TCPSocket.Port > 65535) {
		return fmt.Errorf("%sProbe.tcpSocket.port: %d out of range", kind, p.TCPSocket.Port)
	}
	if p.GRPC != nil && (p.GRPC.Port < 1 || p.GRPC.Port > 65535) {
		return fmt.Errorf("%sProbe.grpc.port: %d out of range", kind, p.GRPC.Port)
	}
	for f, v := range map[string]int32{"initialDelaySeconds": p.InitialDelaySeconds, "timeoutSeconds": p.TimeoutSeconds,
		"periodSeconds": p.PeriodSeconds, "successThreshold": p.SuccessThreshold, "failureThreshold": p.FailureThreshold} {
		if v < 0 {
			return fmt.Errorf("%sProbe.%s: %d must not be negative", kind, f, v)
		}
	}
	if kind != Readiness && p.SuccessThreshold > 1 {
		return fmt.Errorf("%sProbe.successThreshold: must be 1, got %d", kind, p.SuccessThreshold)
	}
	return nil
}

func orDefault(v, d int32) int32 {
	if v <= 0 {
		return d
	}
	return v
}

// Target is the container a probe checks.
type Target interface {
	// Exec runs cmd in the container and returns its exit code and output.
	Exec(ctx context.Context, cmd []string) (exitCode int, output []byte, err error)
	// Dial connects from the pod's network namespace.
	Dial(ctx context.Context, network, addr string) (net.Conn, error)
	// Host is the default host for network checks (the pod IP).
	Host() string
}

// Result of one check.
type Result struct {
	Success bool
	Message string
}

// Check runs p's handler once against t, bounded by timeout.
func Check(ctx context.Context, p *Probe, t Target, timeout time.Duration) Result {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.Exec != nil:
		code, out, err := t.Exec(ctx, p.Exec.Command)
		if err != nil {
			if ctx.Err() != nil {
				return Result{Message: fmt.Sprintf("exec %v timed out after %s", p.Exec.Command, timeout)}
			}
			return Result{Message: fmt.Sprintf("exec %v: %v", p.Exec.Command, err)}
		}
		if code != 0 {
			return Result{Message: fmt.Sprintf("exec %v exited %d: %s", p.Exec.Command, code, trim(out))}
		}
		return Result{Success: true}
	case p.HTTPGet != nil:
		return checkHTTP(ctx, p.HTTPGet, t)
	case p.TCPSocket != nil:
		host := p.TCPSocket.Host
		if host == "" {
			host = t.Host()
		}
		addr := net.JoinHostPort(host, strconv.Itoa(int(p.TCPSocket.Port)))
		c, err := t.Dial(ctx, "tcp", addr)
		if err != nil {
			return Result{Message: fmt.Sprintf("tcp %s: %v", addr, err)}
		}
		c.Close()
		return Result{Success: true}
	case p.GRPC != nil:
		return checkGRPC(ctx, p.GRPC, t)
	}
	return Result{Message: ErrNoHandler.Error()}
}

func checkHTTP(ctx context.Context, h *HTTPGetAction, t Target) Result {
	host := h.Host
	if host == "" {
		host = t.Host()
	}
	scheme := strings.ToLower(h.Scheme)
	if scheme == "" {
		scheme = "http"
	}
	path := h.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	url := fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(int(h.Port))), path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Result{Message: fmt.Sprintf("httpGet %s: %v", url, err)}
	}
	req.Header.Set("User-Agent", "skiff-probe/1.0")
	for _, hd := range h.HTTPHeaders {
		if strings.EqualFold(hd.Name, "host") {
			req.Host = hd.Value
			continue
		}
		req.Header.Add(hd.Name, hd.Value)
	}
	tr := &http.Transport{DialContext: t.Dial, DisableKeepAlives: true, TLSClientConfig: insecureTLS()}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return Result{Message: fmt.Sprintf("httpGet %s: %v", url, err)}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return Result{Success: true}
	}
	return Result{Message: fmt.Sprintf("httpGet %s: status %d: %s", url, resp.StatusCode, trim(body))}
}

func trim(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
