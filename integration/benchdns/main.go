package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/skiffhq/skiff/netproxy/clusterdns"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

func main() {
	dur := flag.Int("seconds", 3, "length of one throughput run (dnsperf -l)")
	rounds := flag.Int("rounds", 5, "paired throughput rounds (node and ceiling back to back; medians count)")
	rate := flag.Int("latency-qps", 2000, "query rate of the latency round (dnsperf -Q)")
	flag.Parse()
	if _, err := exec.LookPath("dnsperf"); err != nil {
		fmt.Fprintln(os.Stderr, "benchdns: dnsperf not found (make deps installs the Debian package)")
		os.Exit(1)
	}
	if err := run(*dur, *rounds, *rate); err != nil {
		fmt.Fprintln(os.Stderr, "benchdns:", err)
		os.Exit(1)
	}
}

const (
	services  = 1000
	headless  = 100
	externals = 200
)

// zone builds the node's zone: 1,000 ClusterIP Services with a named port
// in 100 namespaces, 100 headless Services of 3 endpoints.
func zone() (*clusterdns.Zone, []string) {
	z := clusterdns.NewZone("")
	var queries []string
	for i := range services {
		ns := fmt.Sprintf("ns%d", i%100)
		name := fmt.Sprintf("svc%d", i)
		ip := netip.AddrFrom4([4]byte{10, 96, byte(1 + i/250), byte(i % 250)})
		z.Set(&apiv1.Service{Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: name},
			Spec: &apiv1.ServiceSpec{ClusterIP: ip.String(), Ports: []*apiv1.ServicePort{{Name: "http", Port: 80, Protocol: "TCP"}}}}, nil, nil)
		queries = append(queries, name+"."+ns+".svc.cluster.local A")
		if i%10 == 0 {
			queries = append(queries, "_http._tcp."+name+"."+ns+".svc.cluster.local SRV")
		}
	}
	for i := range headless {
		ns := fmt.Sprintf("ns%d", i%100)
		name := fmt.Sprintf("hl%d", i)
		ss := &apiv1.EndpointSubset{}
		for j := range 3 {
			ss.Addresses = append(ss.Addresses, &apiv1.EndpointAddress{Ip: fmt.Sprintf("10.244.%d.%d", i, 10+j)})
		}
		z.Set(&apiv1.Service{Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: name}, Spec: &apiv1.ServiceSpec{ClusterIP: "None"}},
			&apiv1.Endpoints{Metadata: &apiv1.ObjectMeta{Namespace: ns, Name: name}, Subsets: []*apiv1.EndpointSubset{ss}}, nil)
		queries = append(queries, name+"."+ns+".svc.cluster.local A")
	}
	for i := range externals {
		queries = append(queries, fmt.Sprintf("host%d.example.test A", i))
	}
	return z, queries
}

// upstream answers every external name (TTL an hour: it stays cached).
func upstream() (string, func(), error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600}, A: net.IPv4(192, 0, 2, 1)}}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	return pc.LocalAddr().String(), func() { srv.Shutdown() }, nil
}

// serve runs h on a fresh loopback UDP port.
func serve(h dns.Handler) (host, port string, stop func(), err error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", "", nil, err
	}
	srv := &dns.Server{PacketConn: pc, Handler: h, UDPSize: dns.DefaultMsgSize}
	go srv.ActivateAndServe()
	host, port, _ = net.SplitHostPort(pc.LocalAddr().String())
	return host, port, func() { srv.Shutdown() }, nil
}

func run(dur, rounds, rate int) error {
	upAddr, stopUp, err := upstream()
	if err != nil {
		return err
	}
	defer stopUp()
	z, queries := zone()
	node := &clusterdns.Handler{Zone: z, Upstream: clusterdns.NewUpstream([]string{upAddr}, time.Second)}
	// The ceiling answers from a map of the node's own replies (same
	// sizes), filled while the node's cache warms.
	type key struct {
		name  string
		qtype uint16
	}
	fixed := map[key]*dns.Msg{}
	for _, q := range queries {
		name, typ, _ := strings.Cut(q, " ")
		req := new(dns.Msg)
		req.SetQuestion(dns.Fqdn(name), dns.StringToType[typ])
		r := node.Reply(req, true)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
			return fmt.Errorf("warm-up: %s: %s with %d answers", q, dns.RcodeToString[r.Rcode], len(r.Answer))
		}
		fixed[key{strings.ToLower(dns.Fqdn(name)), dns.StringToType[typ]}] = r
	}
	ceiling := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		if f, ok := fixed[key{strings.ToLower(q.Name), q.Qtype}]; ok {
			m.Answer, m.Extra = f.Answer, f.Extra
		} else {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	data, err := os.CreateTemp("", "benchdns-queries-*.txt")
	if err != nil {
		return err
	}
	defer os.Remove(data.Name())
	fmt.Fprintln(data, strings.Join(queries, "\n"))
	data.Close()

	nHost, nPort, stopNode, err := serve(node)
	if err != nil {
		return err
	}
	defer stopNode()
	cHost, cPort, stopCeil, err := serve(ceiling)
	if err != nil {
		return err
	}
	defer stopCeil()

	fmt.Printf("query set: %d names (%d Services A, %d SRV, %d headless A, %d cached external A); zone of %d Services\n",
		len(queries), services, services/10, headless, externals, services+headless)
	// Paired rounds, the order alternating so that drift in the machine's
	// load favours neither; each round's ratio compares neighbours in time.
	var qs, cs, ratios []float64
	for r := range rounds {
		var q, c float64
		first, second := &q, &c
		fh, fp, sh, sp := nHost, nPort, cHost, cPort
		if r%2 == 1 {
			first, second, fh, fp, sh, sp = &c, &q, cHost, cPort, nHost, nPort
		}
		if *first, err = throughput(data.Name(), fh, fp, dur); err != nil {
			return err
		}
		if *second, err = throughput(data.Name(), sh, sp, dur); err != nil {
			return err
		}
		fmt.Printf("round %d: node %.0f qps, ceiling %.0f qps, ratio %.2f\n", r+1, q, c, q/c)
		qs, cs, ratios = append(qs, q), append(cs, c), append(ratios, q/c)
	}
	best, bestCeil, ratio := median(qs), median(cs), median(ratios)
	per := func(host, port string) float64 {
		c := cpuPerQuery[host+":"+port]
		if c == nil || c.queries == 0 {
			return 0
		}
		return float64(c.cpu.Nanoseconds()) / float64(c.queries) / 1000
	}
	fmt.Printf("server CPU per query: node %.1f µs, ceiling %.1f µs\n", per(nHost, nPort), per(cHost, cPort))
	p99, n, err := latency(data.Name(), nHost, nPort, rate)
	if err != nil {
		return err
	}
	cp99, _, err := latency(data.Name(), cHost, cPort, rate)
	if err != nil {
		return err
	}
	fmt.Printf("latency at %d qps: node p99 %d µs over %d queries, ceiling p99 %d µs\n", rate, p99.Microseconds(), n, cp99.Microseconds())
	fmt.Printf("dns-bench: qps=%.0f p99_us=%d ceiling_qps=%.0f ratio=%.2f\n", best, p99.Microseconds(), bestCeil, ratio)
	return nil
}

var reQPS = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
var reLost = regexp.MustCompile(`Queries lost:\s+(\d+)`)

var reCompleted = regexp.MustCompile(`Queries completed:\s+(\d+)`)

// cpuPerQuery[server] sums this process's CPU time (the servers run in
// it; dnsperf is a child, not counted) over the queries answered: a
// measure of the server's cost that the machine's load does not skew as
// much as its rate.
var cpuPerQuery = map[string]*struct {
	cpu     time.Duration
	queries int
}{}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// throughput runs dnsperf at full speed and returns its queries per second.
func throughput(data, host, port string, seconds int) (float64, error) {
	before := cpuTime()
	out, err := exec.Command("dnsperf", "-s", host, "-p", port, "-d", data, "-l", strconv.Itoa(seconds), "-c", "4", "-q", "200", "-t", "2").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("dnsperf: %v\n%s", err, out)
	}
	used := cpuTime() - before
	m := reQPS.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("dnsperf printed no rate:\n%s", out)
	}
	if c := reCompleted.FindSubmatch(out); c != nil {
		n, _ := strconv.Atoi(string(c[1]))
		k := host + ":" + port
		if cpuPerQuery[k] == nil {
			cpuPerQuery[k] = &struct {
				cpu     time.Duration
				queries int
			}{}
		}
		cpuPerQuery[k].cpu += used
		cpuPerQuery[k].queries += n
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// latency runs dnsperf at a fixed rate, reporting each query, and returns
// the 99th percentile of the answered queries' latencies.
func latency(data, host, port string, rate int) (time.Duration, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "dnsperf", "-s", host, "-p", port, "-d", data, "-l", "3", "-Q", strconv.Itoa(rate), "-v", "-t", "2")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	lats, summary := parseVerbose(stdout)
	if err := cmd.Wait(); err != nil {
		return 0, 0, fmt.Errorf("dnsperf: %v", err)
	}
	if m := reLost.FindStringSubmatch(summary); m != nil && m[1] != "0" {
		return 0, 0, fmt.Errorf("dnsperf lost %s queries at %d qps", m[1], rate)
	}
	if len(lats) == 0 {
		return 0, 0, fmt.Errorf("dnsperf reported no query:\n%s", summary)
	}
	slices.Sort(lats)
	return lats[len(lats)*99/100], len(lats), nil
}

// parseVerbose reads dnsperf -v lines ("> NOERROR name A 0.000123") and
// keeps the rest as the summary.
func parseVerbose(r io.Reader) ([]time.Duration, string) {
	var lats []time.Duration
	var summary strings.Builder
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == ">" {
			if s, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				lats = append(lats, time.Duration(s*float64(time.Second)))
				continue
			}
		}
		summary.WriteString(line + "\n")
	}
	return lats, summary.String()
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}
