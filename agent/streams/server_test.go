package streams_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/agent/runtime"
	"github.com/skiffhq/skiff/agent/streams"
	"github.com/skiffhq/skiff/controlplane/pki"
	streamv1 "github.com/skiffhq/skiff/proto/stream/v1"
)

// onePod answers for one pod and runs exec as `echo` of the command; the
// server's checks, not a runtime, are under test here (the real runtime
// is cmd/ctl/internal/streamtest's).
type onePod struct{}

func (onePod) PodIdentity(uid string) (runtime.PodIdentity, error) {
	if uid != "uid-1" {
		return runtime.PodIdentity{}, runtime.ErrPodNotFound
	}
	return runtime.PodIdentity{UID: uid, Namespace: "shop", Name: "web-1", Containers: []string{"app", "side"}}, nil
}
func (onePod) Logs(context.Context, string, string, runtime.LogOptions, io.Writer) error { return nil }
func (onePod) Exec(_ context.Context, _, _ string, o runtime.ExecOptions) (int, error) {
	_, _ = o.Stdout.Write([]byte(strings.Join(o.Cmd, " ")))
	return 0, nil
}
func (onePod) Attach(context.Context, string, string, runtime.AttachOptions) (runtime.AttachResult, error) {
	return runtime.AttachResult{}, runtime.ErrNotRunning
}
func (onePod) DialPort(context.Context, string, int) (net.Conn, error) {
	return nil, errors.New("no ports")
}

// The port refuses every identity but a control node's even when its TLS
// lets the certificate through (AllowPeer decides each call), and checks
// that the uid it is given is the pod named, and the container one of its.
func TestStreamServerChecksCallerAndPod(t *testing.T) {
	ca, err := pki.CreateCA(pki.DefaultCAConfig())
	if err != nil {
		t.Fatal(err)
	}
	bundle, _ := pki.NewBundle(ca)
	issue := func(id pki.Identity, server bool) tls.Certificate {
		kp, _, err := ca.Issue(pki.IssueOptions{Identity: id, Server: server, Hosts: []string{"127.0.0.1"}})
		if err != nil {
			t.Fatal(err)
		}
		c, _ := kp.TLS()
		return c
	}
	w1, _ := pki.NodeIdentity("w1")
	w2, _ := pki.NodeIdentity("w2")
	c1, _ := pki.ControlIdentity("c1")
	// Any certificate of the CA passes this handshake: the call is refused after.
	serverTLS := &tls.Config{Certificates: []tls.Certificate{issue(w1, true)}, ClientCAs: bundle.Pool(),
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}
	srv, err := streams.New(streams.Config{Runtime: onePod{}, TLS: serverTLS, AllowPeer: pki.ControlPeerOnly})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	defer func() { cancel(); <-done }()

	exec := func(cert tls.Certificate, ref *streamv1.PodRef) (string, error) {
		cfg := &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: bundle.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			return "", err
		}
		defer conn.Close()
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		defer ccancel()
		s, err := streamv1.NewNodeStreamsClient(conn).Exec(cctx)
		if err != nil {
			return "", err
		}
		if err := s.Send(&streamv1.ExecInput{Input: &streamv1.ExecInput_Start{Start: &streamv1.ExecStart{Pod: ref, Command: []string{"hostname"}}}}); err != nil {
			if _, rerr := s.Recv(); rerr != nil && !errors.Is(rerr, io.EOF) {
				return "", rerr // the call's status: Send says only io.EOF
			}
			return "", err
		}
		var out string
		for {
			m, err := s.Recv()
			if err != nil {
				return out, err
			}
			out += string(m.GetStdout())
			if m.GetExit() != nil {
				return out, nil
			}
		}
	}
	good := &streamv1.PodRef{Namespace: "shop", Name: "web-1", Uid: "uid-1", Container: "side"}
	for name, cert := range map[string]tls.Certificate{"another worker": issue(w2, true), "the admin": issue(pki.AdminIdentity(), false)} {
		if _, err := exec(cert, good); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("%s: %v, want PermissionDenied", name, err)
		}
	}
	control := issue(c1, true)
	if out, err := exec(control, good); err != nil || out != "hostname" {
		t.Fatalf("control node: %q %v", out, err)
	}
	for _, tc := range []struct {
		ref  *streamv1.PodRef
		code codes.Code
		msg  string
	}{
		{&streamv1.PodRef{Namespace: "shop", Name: "web-1", Container: "app"}, codes.InvalidArgument, "pod.uid: required"},
		{&streamv1.PodRef{Namespace: "shop", Name: "db-1", Uid: "uid-1", Container: "app"}, codes.NotFound, "is pod shop/web-1"},
		{&streamv1.PodRef{Namespace: "shop", Name: "web-1", Uid: "uid-9", Container: "app"}, codes.NotFound, "pod not found"},
		{&streamv1.PodRef{Namespace: "shop", Name: "web-1", Uid: "uid-1"}, codes.InvalidArgument, "has 2 containers"},
		{&streamv1.PodRef{Namespace: "shop", Name: "web-1", Uid: "uid-1", Container: "nope"}, codes.InvalidArgument, `container "nope" is not in pod shop/web-1`},
	} {
		_, err := exec(control, tc.ref)
		if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
			t.Errorf("%v: %v, want %s with %q", tc.ref, err, tc.code, tc.msg)
		}
	}
}
