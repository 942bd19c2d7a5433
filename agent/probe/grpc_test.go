package probe

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// startHealthServer serves the standard health service on l; the returned
// server's statuses drive the test.
func startHealthServer(t *testing.T, l net.Listener) *health.Server {
	t.Helper()
	hs := health.NewServer()
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-errc; err != nil && err != grpc.ErrServerStopped {
			t.Errorf("health server: %v", err)
		}
	})
	return hs
}

func TestCheckGRPC(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := startHealthServer(t, l)
	tg := loopTarget{}
	port := portOf(t, l.Addr().String())
	whole := &Probe{GRPC: &GRPCAction{Port: port}}
	if r := Check(context.Background(), whole, tg, time.Second); !r.Success {
		t.Fatalf("server SERVING: %+v", r)
	}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	if r := Check(context.Background(), whole, tg, time.Second); r.Success || r.Message == "" {
		t.Fatalf("NOT_SERVING counted as success: %+v", r)
	}
	hs.SetServingStatus("db", healthpb.HealthCheckResponse_SERVING)
	if r := Check(context.Background(), &Probe{GRPC: &GRPCAction{Port: port, Service: "db"}}, tg, time.Second); !r.Success {
		t.Fatalf("service db SERVING: %+v", r)
	}
	if r := Check(context.Background(), &Probe{GRPC: &GRPCAction{Port: port, Service: "nope"}}, tg, time.Second); r.Success {
		t.Fatalf("unknown service counted as success: %+v", r)
	}
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	if r := Check(context.Background(), &Probe{GRPC: &GRPCAction{Port: portOf(t, closed.Addr().String())}}, tg, time.Second); r.Success {
		t.Fatalf("closed port counted as success: %+v", r)
	}
	if err := (&Probe{GRPC: &GRPCAction{Port: 0}}).Validate(Liveness); err == nil {
		t.Fatal("grpc port 0 accepted")
	}
	if err := (&Probe{GRPC: &GRPCAction{Port: 1}, Exec: &ExecAction{Command: []string{"x"}}}).Validate(Liveness); err == nil {
		t.Fatal("grpc and exec together accepted")
	}
}

// The health server listens on 127.0.0.1 inside a network namespace the
// test made (no links but lo); the probe reaches it only through
// NetnsDialer, exactly as the runtime probes a pod.
func TestCheckGRPCInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	var l net.Listener
	var ns netns.NsHandle
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if ns, err = netns.New(); err != nil {
			errc <- err
			return
		}
		err = func() error {
			lo, err := netlink.LinkByName("lo")
			if err != nil {
				return err
			}
			if err := netlink.LinkSetUp(lo); err != nil {
				return err
			}
			l, err = net.Listen("tcp", "127.0.0.1:0")
			return err
		}()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("netns with listener: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	startHealthServer(t, l)
	port := portOf(t, l.Addr().String())
	path := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(ns))
	inPod := netnsTarget{dial: NetnsDialer(path)}
	if r := Check(context.Background(), &Probe{GRPC: &GRPCAction{Port: port}}, inPod, 2*time.Second); !r.Success {
		t.Fatalf("grpc probe inside the netns: %+v", r)
	}
	// The same address from the test's own namespace is not the server.
	if r := Check(context.Background(), &Probe{GRPC: &GRPCAction{Port: port}}, loopTarget{}, time.Second); r.Success {
		t.Fatal("probe from the root namespace reached the pod's loopback server")
	}
}

type netnsTarget struct {
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (netnsTarget) Exec(context.Context, []string) (int, []byte, error) { return 1, nil, nil }
func (n netnsTarget) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return n.dial(ctx, network, addr)
}
func (netnsTarget) Host() string { return "127.0.0.1" }
