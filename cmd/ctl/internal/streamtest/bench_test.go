package streamtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"net"
	"strconv"
	"strings"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/skiffhq/skiff/agent/runtime"
	"github.com/skiffhq/skiff/agent/runtime/runtimetest"
	"github.com/skiffhq/skiff/agent/streams"
	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
	streamv1 "github.com/skiffhq/skiff/proto/stream/v1"
)

// BenchmarkStream is `make bench-stream`: in one run, against the same
// container,
//
//   - exec round trip (start to exit of `true`) through the API server's
//     relay to the node, p50 and p99, beside libcontainer's exec on the
//     node itself (the runtime's Exec, what `runc exec` does, without the
//     runc binary's own start-up);
//
//   - `logs -f` throughput through the relay (log payload bytes per
//     second) beside reading the log file directly on the node.
//
//   - the ceiling of the logs path: the transport alone with the same
//     message size (ceilings), and the CPU the follow cost per GB.
//
// It ends with one line:
// stream-bench: exec_p50_ms=N exec_p99_ms=N runc_exec_p50_ms=N logs_mbps=N direct_mbps=N
// tls_mbps=N grpc_mbps=N relay_ceiling_mbps=N logs_cpu_s_per_gb=N relay_ceiling_cpu_s_per_gb=N load=N
func BenchmarkStream(b *testing.B) {
	const (
		execRuns   = 200
		logPayload = 64 << 20 // bytes of log lines the container writes
		lineLen    = 100
	)
	l := newLab(b, func(e *runtimetest.Env) {
		e.RtCfg.LogMaxBytes = 1 << 30 // one file: the direct read is one file
		e.Reopen(b)
	})
	ctx := context.Background()
	// yes prints lines of lineLen-1 characters and a newline.
	line := make([]byte, lineLen-1)
	for i := range line {
		line[i] = 'x'
	}
	pod := l.runPod("bench", "Always", &apiv1.Container{Name: "app", Command: []string{"sh", "-c",
		fmt.Sprintf("yes %s | head -c %d; exec sleep 3600", line, logPayload)}})
	uid := pod.GetMetadata().GetUid()
	logPath := filepath.Join(l.e.RtCfg.StateDir, "pods", uid, "logs", "app.log")
	var fileSize int64
	t0 := time.Now()
	testutil.WaitFor(b, 2*time.Minute, "the container wrote its log", func() bool {
		st, err := os.Stat(logPath)
		if err != nil {
			return false
		}
		if st.Size() == fileSize && st.Size() > logPayload {
			return true
		}
		fileSize = st.Size()
		time.Sleep(300 * time.Millisecond)
		return false
	})

	b.Logf("the container wrote %d MiB of log file in %s", fileSize>>20, time.Since(t0).Round(time.Millisecond))

	// exec through the relay, then on the node.
	var relay, direct []time.Duration
	ref := &streamv1.PodRef{Namespace: "default", Name: "bench", Container: "app"}
	for i := 0; i < execRuns; i++ {
		t0 := time.Now()
		code, err := execTrue(ctx, l.admin, ref)
		if err != nil || code != 0 {
			b.Fatalf("exec true through the API: %d %v", code, err)
		}
		relay = append(relay, time.Since(t0))
		t0 = time.Now()
		nodeCode, err := l.e.Runtime.Exec(ctx, uid, "app", runtime.ExecOptions{Cmd: []string{"true"}})
		if err != nil || nodeCode != 0 {
			b.Fatalf("exec true on the node: %d %v", nodeCode, err)
		}
		direct = append(direct, time.Since(t0))
	}

	// The log: directly from the file, then `logs -f` through the relay
	// until every payload byte arrived (best of 3 each).
	// The CPU this process spent per GB of the follow (agent, API
	// server and client are all in it) says what the path costs apart
	// from how much of the shared cores it got.
	load0 := loadAvg()
	var directMBps, logsMBps, logsCPU float64
	for i := 0; i < 3; i++ {
		n, d := readFile(b, logPath)
		directMBps = max(directMBps, float64(n)/d.Seconds()/1e6)
		c0 := cpuTime()
		n, d = followLogs(b, l.admin, logPayload/lineLen*lineLen) // head cut the last line short: it stays pending
		if mbps := float64(n) / d.Seconds() / 1e6; mbps > logsMBps {
			logsMBps, logsCPU = mbps, (cpuTime()-c0).Seconds()/(float64(n)/1e9)
		}
	}
	{ // Where the time goes: the node's own parse of the file, and its port without the relay.
		cw := &countUntil{want: 1 << 62}
		t0 := time.Now()
		if err := l.e.Runtime.Logs(ctx, uid, "app", runtime.LogOptions{}, cw); err != nil {
			b.Fatal(err)
		}
		fmt.Printf("on the node, parsing the log file (runtime.Logs): %.0f MB/s of payload\n", float64(cw.n)/time.Since(t0).Seconds()/1e6)
		controlID, _ := pki.ControlIdentity("c1")
		cfg := l.bundle.NodeClientConfig(l.issue(controlID, true, "127.0.0.1"), l.node, l.nodeIP)
		conn, err := grpc.NewClient(net.JoinHostPort(l.nodeIP.String(), strconv.Itoa(l.port)),
			append(api.NodeStreamDialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))...)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		t0 = time.Now()
		st, err := streamv1.NewNodeStreamsClient(conn).Logs(ctx, &streamv1.LogsRequest{Pod: &streamv1.PodRef{Namespace: "default", Name: "bench", Uid: uid, Container: "app"}})
		if err != nil {
			b.Fatal(err)
		}
		cw = &countUntil{want: 1 << 62}
		for {
			m := new(codec.Raw)
			if err := st.RecvMsg(m); err != nil {
				break
			}
			if err := m.WriteBytesField(1, cw); err != nil {
				b.Fatal(err)
			}
			m.Free()
		}
		fmt.Printf("the node's stream port dialled directly (no API relay): %.0f MB/s of payload\n", float64(cw.n)/time.Since(t0).Seconds()/1e6)
	}
	// The transport alone, in the same run (see ceilings).
	tlsC, grpcC, relayC := ceilings(b, logPayload, 3)
	load1 := loadAvg()
	b.ReportMetric(ms(pct(relay, 50)), "exec_p50_ms")
	fmt.Printf("exec through the API relay: p50 %.1f ms, p99 %.1f ms (%d runs); libcontainer exec on the node: p50 %.1f ms, p99 %.1f ms\n",
		ms(pct(relay, 50)), ms(pct(relay, 99)), execRuns, ms(pct(direct, 50)), ms(pct(direct, 99)))
	fmt.Printf("log of %d MiB payload (%d MiB file): logs -f %.0f MB/s of payload (%.0f %% of the direct read; %.2f CPU-seconds per GB), direct file read %.0f MB/s of file\n",
		logPayload>>20, fileSize>>20, logsMBps, 100*logsMBps/directMBps, logsCPU, directMBps)
	fmt.Printf("ceiling, %d KiB messages on loopback mTLS, nothing read or parsed: TLS connection %s, gRPC one hop %s, gRPC two hops (a pass-on relay) %s\n",
		streams.ChunkSize>>10, tlsC, grpcC, relayC)
	fmt.Printf("load average (1 min) %.1f before the logs runs, %.1f after the ceiling\n", load0, load1)
	fmt.Printf("stream-bench: exec_p50_ms=%.1f exec_p99_ms=%.1f runc_exec_p50_ms=%.1f logs_mbps=%.0f direct_mbps=%.0f tls_mbps=%.0f grpc_mbps=%.0f relay_ceiling_mbps=%.0f logs_cpu_s_per_gb=%.2f relay_ceiling_cpu_s_per_gb=%.2f load=%.1f\n",
		ms(pct(relay, 50)), ms(pct(relay, 99)), ms(pct(direct, 50)), logsMBps, directMBps, tlsC.mbps, grpcC.mbps, relayC.mbps, logsCPU, relayC.cpuPerGB, (load0+load1)/2)
}

// cpuTime is the CPU time (user and system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadAvg is the machine's 1-minute load average (0 when unknown).
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func execTrue(ctx context.Context, c *client.Client, ref *streamv1.PodRef) (int32, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := c.PodStreams().Exec(ctx)
	if err != nil {
		return -1, err
	}
	if err := s.Send(&streamv1.ExecInput{Input: &streamv1.ExecInput_Start{Start: &streamv1.ExecStart{Pod: ref, Command: []string{"true"}}}}); err != nil {
		return -1, err
	}
	for {
		m, err := s.Recv()
		if err != nil {
			return -1, err
		}
		if m.GetExit() != nil {
			return m.GetExit().GetCode(), nil
		}
	}
}

func readFile(b *testing.B, path string) (int64, time.Duration) {
	t0 := time.Now()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	n, err := io.Copy(io.Discard, bufio.NewReaderSize(f, 32<<10))
	if err != nil {
		b.Fatal(err)
	}
	return n, time.Since(t0)
}

// errEnough ends a follow once everything arrived.
var errEnough = errors.New("all bytes arrived")

type countUntil struct {
	n, want int64
}

func (c *countUntil) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	if c.n >= c.want {
		return len(p), errEnough
	}
	return len(p), nil
}

func followLogs(b *testing.B, c *client.Client, want int64) (int64, time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w := &countUntil{want: want}
	t0 := time.Now()
	err := c.Logs(ctx, "default", "bench", client.LogOptions{Container: "app", Follow: true}, w)
	d := time.Since(t0)
	if !errors.Is(err, errEnough) {
		b.Fatalf("logs -f: %v after %d of %d bytes", err, w.n, want)
	}
	return w.n, d
}

func pct(ds []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
