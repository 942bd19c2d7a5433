package streamtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/agent/streams"
	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/proto/codec"
	streamv1 "github.com/skiffhq/skiff/proto/stream/v1"
)

// The ceiling of the logs path on this machine: what the transport
// alone carries, with nothing to read, parse, authorize or look up.
//   - tls: one mutually authenticated TLS 1.3 connection on loopback,
//     chunk-sized writes on one side, reads on the other (encrypt and
//     decrypt once: the cost of one hop's bytes before HTTP/2 and gRPC).
//   - grpc: one NodeStreams.Logs stream over mTLS on loopback, the server
//     sending ready-made chunks of the agent's message size with the
//     agent's server options and read with the relay's dial options (one
//     hop: node → API server).
//   - relay: the same stream through a relay that passes each message on
//     unchanged as the API server's does (two hops, each encrypting and
//     decrypting every byte once: node → API server → user).
//
// All three run in this process on the machine's cores, as the
// benchmark's agent, API servers and client do.

// ceilingCerts are a node's and a control node's certificates of one CA.
type ceilingCerts struct {
	server, client *tls.Config
}

func newCeilingCerts(tb testing.TB) ceilingCerts {
	tb.Helper()
	ca, err := pki.CreateCA(pki.DefaultCAConfig())
	if err != nil {
		tb.Fatal(err)
	}
	bundle, err := pki.NewBundle(ca)
	if err != nil {
		tb.Fatal(err)
	}
	issue := func(id pki.Identity, hosts ...string) pki.StaticCert {
		kp, _, err := ca.Issue(pki.IssueOptions{Identity: id, Server: true, Hosts: hosts})
		if err != nil {
			tb.Fatal(err)
		}
		c, err := kp.TLS()
		if err != nil {
			tb.Fatal(err)
		}
		return pki.StaticCert{Cert: c}
	}
	nodeID, _ := pki.NodeIdentity("ceiling")
	controlID, _ := pki.ControlIdentity("c1")
	ip := netip.MustParseAddr("127.0.0.1")
	return ceilingCerts{
		server: bundle.NodeStreamServerConfig(issue(nodeID, ip.String())),
		client: bundle.NodeClientConfig(issue(controlID, ip.String()), "ceiling", ip),
	}
}

// tlsCeiling copies total bytes over one mTLS connection in chunk-sized
// writes; MB/s.
func tlsCeiling(tb testing.TB, certs ceilingCerts, chunk int, total int64) float64 {
	tb.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", certs.server)
	if err != nil {
		tb.Fatal(err)
	}
	defer lis.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		buf := make([]byte, chunk)
		for sent := int64(0); sent < total; sent += int64(chunk) {
			if _, err := c.Write(buf); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	cfg := certs.client.Clone()
	cfg.NextProtos = []string{"h2"}
	c, err := tls.Dial("tcp", lis.Addr().String(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	t0 := time.Now()
	n, err := io.CopyBuffer(io.Discard, io.LimitReader(c, total), make([]byte, chunk))
	d := time.Since(t0)
	if err != nil || n < total {
		tb.Fatalf("tls ceiling: %d of %d bytes: %v", n, total, err)
	}
	if err := <-errc; err != nil {
		tb.Fatalf("tls ceiling sender: %v", err)
	}
	return float64(n) / d.Seconds() / 1e6
}

// chunkSource serves NodeStreams.Logs as total bytes of ready-made
// chunks of chunk bytes.
type chunkSource struct {
	streamv1.UnimplementedNodeStreamsServer
	msg   []byte
	chunk int
	total int64
}

func (s *chunkSource) Logs(_ *streamv1.LogsRequest, stream streamv1.NodeStreams_LogsServer) error {
	for sent := int64(0); sent < s.total; sent += int64(s.chunk) {
		// A SliceBuffer: gRPC's free of it after the write is a no-op, so
		// the same bytes go out every time (no encode, no copy).
		if err := stream.SendMsg(codec.NewRaw(mem.BufferSlice{mem.SliceBuffer(s.msg)})); err != nil {
			return err
		}
	}
	return nil
}

// passOn relays NodeStreams.Logs to next as the API server's relay does:
// each message passed on in the buffers it arrived in.
type passOn struct {
	streamv1.UnimplementedNodeStreamsServer
	next streamv1.NodeStreamsClient
}

func (p *passOn) Logs(req *streamv1.LogsRequest, stream streamv1.NodeStreams_LogsServer) error {
	ns, err := p.next.Logs(stream.Context(), req)
	if err != nil {
		return err
	}
	for {
		m := new(codec.Raw)
		if err := ns.RecvMsg(m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := stream.SendMsg(m); err != nil {
			m.Free()
			return err
		}
	}
}

// serveCeiling serves srv's NodeStreams on loopback with the agent's
// server options until the test ends; a client of it with the relay's
// dial options.
func serveCeiling(tb testing.TB, certs ceilingCerts, srv streamv1.NodeStreamsServer) streamv1.NodeStreamsClient {
	tb.Helper()
	g := grpc.NewServer(append(streams.TransportOptions(), grpc.Creds(credentials.NewTLS(certs.server)))...)
	streamv1.RegisterNodeStreamsServer(g, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }() // ends with Stop below; its error then says only that
	tb.Cleanup(g.Stop)
	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(),
		append(api.NodeStreamDialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(certs.client)))...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return streamv1.NewNodeStreamsClient(conn)
}

// grpcCeiling streams total bytes in chunks of chunk through hops gRPC
// hops (1: straight from the source; 2: through a passOn relay), read
// as the user's client reads; MB/s of payload.
func grpcCeiling(tb testing.TB, certs ceilingCerts, hops, chunk int, total int64) float64 {
	tb.Helper()
	msg, err := proto.Marshal(&streamv1.LogsChunk{Data: make([]byte, chunk)})
	if err != nil {
		tb.Fatal(err)
	}
	c := serveCeiling(tb, certs, &chunkSource{msg: msg, chunk: chunk, total: total})
	for h := 1; h < hops; h++ {
		c = serveCeiling(tb, certs, &passOn{next: c})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	st, err := c.Logs(ctx, &streamv1.LogsRequest{})
	if err != nil {
		tb.Fatal(err)
	}
	var n int64
	cw := &countUntil{want: 1 << 62}
	for {
		m := new(codec.Raw)
		err := st.RecvMsg(m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			tb.Fatalf("grpc ceiling (%d hops): %v", hops, err)
		}
		if err := m.WriteBytesField(1, cw); err != nil {
			tb.Fatal(err)
		}
		m.Free()
	}
	n = cw.n
	d := time.Since(t0)
	if n < total {
		tb.Fatalf("grpc ceiling (%d hops): %d of %d bytes", hops, n, total)
	}
	return float64(n) / d.Seconds() / 1e6
}

// ceiling is one of them: the best run's MB/s, and the CPU this process
// spent per GB in that run (what it costs whatever share of the cores
// it gets).
type ceiling struct{ mbps, cpuPerGB float64 }

func (c *ceiling) run(total int64, f func() float64) {
	c0 := cpuTime()
	if mbps := f(); mbps > c.mbps {
		c.mbps, c.cpuPerGB = mbps, (cpuTime()-c0).Seconds()/(float64(total)/1e9)
	}
}

func (c ceiling) String() string {
	return fmt.Sprintf("%.0f MB/s (%.2f CPU-s/GB)", c.mbps, c.cpuPerGB)
}

// ceilings measures the three, best of runs each.
func ceilings(tb testing.TB, total int64, runs int) (tlsC, grpcC, relayC ceiling) {
	certs := newCeilingCerts(tb)
	for i := 0; i < runs; i++ {
		tlsC.run(total, func() float64 { return tlsCeiling(tb, certs, streams.ChunkSize, total) })
		grpcC.run(total, func() float64 { return grpcCeiling(tb, certs, 1, streams.ChunkSize, total) })
		relayC.run(total, func() float64 { return grpcCeiling(tb, certs, 2, streams.ChunkSize, total) })
	}
	return tlsC, grpcC, relayC
}

// BenchmarkStreamCeiling is the ceiling alone (no containers, no
// cluster): go test -run '^$' -bench StreamCeiling ./cmd/ctl/internal/streamtest/
func BenchmarkStreamCeiling(b *testing.B) {
	tlsC, grpcC, relayC := ceilings(b, 256<<20, 3)
	fmt.Printf("ceiling (%d KiB messages, loopback mTLS): TLS connection %s, gRPC one hop %s, gRPC two hops (a pass-on relay) %s\n",
		streams.ChunkSize>>10, tlsC, grpcC, relayC)
}
