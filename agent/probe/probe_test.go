package probe

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/testutil"
)

// loopTarget dials loopback from the test's own namespace and runs exec
// checks through a function: a stand-in container for unit tests.
type loopTarget struct {
	exec func(cmd []string) int
}

func (l loopTarget) Exec(ctx context.Context, cmd []string) (int, []byte, error) {
	return l.exec(cmd), []byte("out"), nil
}
func (loopTarget) Dial(ctx context.Context, n, a string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, n, a)
}
func (loopTarget) Host() string { return "127.0.0.1" }

func portOf(t *testing.T, addr string) int32 {
	_, p, _ := net.SplitHostPort(addr)
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return int32(n)
}

func TestCheckHandlers(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Probe") != "yes" || r.URL.Path != "/healthz" {
			w.WriteHeader(400)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	tg := loopTarget{exec: func(cmd []string) int { return len(cmd) - 1 }}
	port := portOf(t, srv.Listener.Addr().String())
	hp := &Probe{HTTPGet: &HTTPGetAction{Path: "healthz", Port: port, HTTPHeaders: []HTTPHeader{{Name: "X-Probe", Value: "yes"}}}}
	if r := Check(context.Background(), hp, tg, time.Second); !r.Success {
		t.Fatalf("http 200: %+v", r)
	}
	status.Store(503)
	if r := Check(context.Background(), hp, tg, time.Second); r.Success {
		t.Fatalf("http 503 counted as success")
	}
	if r := Check(context.Background(), &Probe{TCPSocket: &TCPSocketAction{Port: port}}, tg, time.Second); !r.Success {
		t.Fatalf("tcp open: %+v", r)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := portOf(t, l.Addr().String())
	l.Close()
	if r := Check(context.Background(), &Probe{TCPSocket: &TCPSocketAction{Port: closed}}, tg, time.Second); r.Success {
		t.Fatalf("tcp closed port counted as success")
	}
	if r := Check(context.Background(), &Probe{Exec: &ExecAction{Command: []string{"ok"}}}, tg, time.Second); !r.Success {
		t.Fatalf("exec 0: %+v", r)
	}
	if r := Check(context.Background(), &Probe{Exec: &ExecAction{Command: []string{"x", "fail"}}}, tg, time.Second); r.Success {
		t.Fatalf("exec 1 counted as success")
	}
}

func TestValidate(t *testing.T) {
	for _, p := range []*Probe{
		{},
		{Exec: &ExecAction{}},
		{HTTPGet: &HTTPGetAction{Port: 0}},
		{TCPSocket: &TCPSocketAction{Port: 1}, PeriodSeconds: -1},
	} {
		if err := p.Validate(Liveness); err == nil {
			t.Errorf("%+v: want error", p)
		}
	}
	if err := (&Probe{TCPSocket: &TCPSocketAction{Port: 1}, SuccessThreshold: 2}).Validate(Liveness); err == nil {
		t.Error("liveness successThreshold 2 accepted")
	}
	if err := (&Probe{TCPSocket: &TCPSocketAction{Port: 1}, SuccessThreshold: 2}).Validate(Readiness); err != nil {
		t.Error(err)
	}
}

// The runner's state machine: startup gates, readiness flips both ways with
// thresholds, liveness reports once after failureThreshold failures.
func TestRunnerSemantics(t *testing.T) {
	var startupOK, ready, alive atomic.Bool
	var startupCalls atomic.Int32
	alive.Store(true)
	tg := loopTarget{exec: func(cmd []string) int {
		var ok bool
		switch cmd[0] {
		case "startup":
			startupCalls.Add(1)
			ok = startupOK.Load()
		case "ready":
			ok = ready.Load()
		case "live":
			ok = alive.Load()
		}
		if ok {
			return 0
		}
		return 1
	}}
	mk := func(c string, fail, succ int32) *Probe {
		return &Probe{Exec: &ExecAction{Command: []string{c}}, PeriodSeconds: 1, FailureThreshold: fail, SuccessThreshold: succ}
	}
	var mu sync.Mutex
	var readyEvents []bool
	var started atomic.Bool
	var unhealthy atomic.Value
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		Runner{Unit: 10 * time.Millisecond}.Run(ctx, Set{Startup: mk("startup", 1000, 1), Liveness: mk("live", 3, 1), Readiness: mk("ready", 2, 2)}, tg, time.Now(), Events{
			Started:   func() { started.Store(true) },
			Ready:     func(r bool) { mu.Lock(); readyEvents = append(readyEvents, r); mu.Unlock() },
			Unhealthy: func(k Kind, m string) { unhealthy.Store(string(k)) },
		})
	}()
	ready.Store(true)
	// While startup keeps failing nothing else may run.
	testutil.WaitFor(t, 2*time.Second, "startup probed 3 times", func() bool { return startupCalls.Load() >= 3 })
	if started.Load() || len(readyEvents) != 0 {
		t.Fatal("readiness ran before startup succeeded")
	}
	startupOK.Store(true)
	testutil.WaitFor(t, 2*time.Second, "ready after startup", func() bool { mu.Lock(); defer mu.Unlock(); return len(readyEvents) == 1 && readyEvents[0] })
	ready.Store(false)
	testutil.WaitFor(t, 2*time.Second, "unready", func() bool { mu.Lock(); defer mu.Unlock(); return len(readyEvents) == 2 && !readyEvents[1] })
	ready.Store(true)
	testutil.WaitFor(t, 2*time.Second, "ready again", func() bool { mu.Lock(); defer mu.Unlock(); return len(readyEvents) == 3 && readyEvents[2] })
	alive.Store(false)
	testutil.WaitFor(t, 2*time.Second, "liveness failure reported", func() bool { return unhealthy.Load() == "liveness" })
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("runner did not stop after liveness failure")
	}
}
