package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/skiffhq/skiff/netproxy/ingress"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

var (
	profile string
	rounds  int
	// wrkPrefix runs wrk on the load generator's CPU (taskset), when pinned.
	wrkPrefix []string
	// workers is the proxies' worker count: nginx's worker_processes and
	// the ingress proxy's GOMAXPROCS (one event loop each).
	workers = "auto"
)

const backendEnv = "SKIFF_BENCHINGRESS_BACKEND"

func main() {
	if os.Getenv(backendEnv) != "" {
		runBackends()
		return
	}
	dur := flag.Duration("d", 10*time.Second, "wrk duration per target")
	conns := flag.Int("c", 64, "wrk connections")
	threads := flag.Int("t", 2, "wrk threads")
	flag.IntVar(&rounds, "rounds", 3, "interleaved rounds (each target once per round; medians reported)")
	cpuProfile := flag.String("cpuprofile", "", "write the ingress proxy's CPU profile (its wrk run) here")
	pin := flag.Bool("pin", true, "run wrk on a CPU of its own and the proxies and backends on the others (needs 2 CPUs and taskset)")
	flag.Parse()
	profile = *cpuProfile
	if *pin {
		if err := pinClient(); err != nil {
			fmt.Fprintln(os.Stderr, "bench-ingress:", err)
			os.Exit(1)
		}
	}
	if err := run(*dur, *conns, *threads); err != nil {
		fmt.Fprintln(os.Stderr, "bench-ingress:", err)
		os.Exit(1)
	}
}

// pinClient puts wrk on a CPU of its own and this process (the ingress
// proxy) and its children (backends, nginx) on the others, with as many
// proxy workers as those CPUs.
func pinClient() error {
	client, servers, ok := splitCPUs()
	if !ok {
		fmt.Println("pin: fewer than 2 CPUs, running unpinned")
		return nil
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return fmt.Errorf("taskset not found (Debian package util-linux), or run with -pin=false: %w", err)
	}
	if err := pinProcess(servers); err != nil {
		return err
	}
	runtime.GOMAXPROCS(len(servers))
	workers = strconv.Itoa(len(servers))
	wrkPrefix = []string{"taskset", "-c", strconv.Itoa(client)}
	fmt.Printf("pin: wrk on CPU %d; proxies and backends on CPUs %v, %s worker(s) each\n", client, servers, workers)
	return nil
}

// runBackends serves two loopback HTTP servers and prints their ports.
func runBackends() {
	var ports []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
		body := []byte("hello from a backend\n")
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write(body)
		})}
		go func() { _ = srv.Serve(ln) }()
	}
	fmt.Println(strings.Join(ports, " "))
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes stdin
}

func run(dur time.Duration, conns, threads int) error {
	for _, bin := range []string{"wrk", "nginx"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s not found (Debian package %s; make deps installs it): %w", bin, bin, err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	be := exec.Command(self)
	be.Env = append(os.Environ(), backendEnv+"=1")
	stdin, _ := be.StdinPipe()
	out, _ := be.StdoutPipe()
	be.Stderr = os.Stderr
	if err := be.Start(); err != nil {
		return err
	}
	defer func() { _ = stdin.Close(); _ = be.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("backends: %w", err)
	}
	ports := strings.Fields(line)

	// The ingress proxy, with a table built from API objects.
	proxy := ingress.NewProxy(slog.New(slog.NewTextHandler(io.Discard, nil)))
	sub := &apiv1.EndpointSubset{Ports: []*apiv1.EndpointPort{{Name: "http", Port: mustAtoi(ports[0])}}}
	sub.Addresses = []*apiv1.EndpointAddress{{Ip: "127.0.0.1"}}
	sub2 := &apiv1.EndpointSubset{Ports: []*apiv1.EndpointPort{{Name: "http", Port: mustAtoi(ports[1])}},
		Addresses: []*apiv1.EndpointAddress{{Ip: "127.0.0.1"}}}
	proxy.SetTable(ingress.Build(ingress.Sources{
		Ingresses: []*apiv1.Ingress{{Metadata: &apiv1.ObjectMeta{Namespace: "bench", Name: "web"}, Spec: &apiv1.IngressSpec{
			Rules: []*apiv1.IngressRule{{Host: "bench.local", Http: &apiv1.HTTPIngressRuleValue{Paths: []*apiv1.HTTPIngressPath{
				{Path: "/", PathType: "Prefix", Backend: &apiv1.IngressBackend{Service: &apiv1.IngressServiceBackend{Name: "web",
					Port: &apiv1.ServiceBackendPort{Number: 80}}}}}}}}}}},
		Services: func(ns, name string) *apiv1.Service {
			return &apiv1.Service{Spec: &apiv1.ServiceSpec{Ports: []*apiv1.ServicePort{{Name: "http", Port: 80}}}}
		},
		Endpoints: func(ns, name string) *apiv1.Endpoints {
			return &apiv1.Endpoints{Subsets: []*apiv1.EndpointSubset{sub, sub2}}
		},
	}))
	srv, err := ingress.Listen(ingress.ServerConfig{HTTPAddr: "127.0.0.1:0"}, proxy)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	defer func() { cancel(); <-served }()

	nginxPort, nginxPID, stopNginx, err := startNginx(ports)
	if err != nil {
		return err
	}
	defer stopNginx()

	hostHdr := "Host: bench.local"
	// cpu reads the CPU time the target's proxy used so far (the ingress
	// proxy is this process; nginx is its master and workers), so each
	// run also yields CPU per request: unlike req/s it does not depend on
	// how much of the shared machine the proxy got.
	targets := []struct {
		name, url string
		cpu       func() (time.Duration, error)
	}{
		{"ingress", "http://" + srv.HTTPAddr().String() + "/", func() (time.Duration, error) { return processCPU(os.Getpid(), false) }},
		{"nginx", "http://127.0.0.1:" + nginxPort + "/", func() (time.Duration, error) { return processCPU(nginxPID, true) }},
		{"direct", "http://127.0.0.1:" + ports[0] + "/", nil},
	}
	// Rounds interleave the targets, so a burst of load from elsewhere on
	// the machine hits all of them alike; each result is the median.
	got := map[string][]wrkResult{}
	for round := range rounds {
		for _, tg := range targets {
			if profile != "" && tg.name == "ingress" && round == 0 {
				f, err := os.Create(profile)
				if err != nil {
					return err
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
			}
			allocs0 := heapAllocs()
			var cpu0 time.Duration
			if tg.cpu != nil {
				if cpu0, err = tg.cpu(); err != nil {
					return fmt.Errorf("%s CPU time: %w", tg.name, err)
				}
			}
			r, err := wrk(dur, conns, threads, tg.url, hostHdr)
			if err == nil && tg.cpu != nil {
				cpu1, cerr := tg.cpu()
				if cerr != nil {
					return fmt.Errorf("%s CPU time: %w", tg.name, cerr)
				}
				r.cpuPerReq = float64((cpu1 - cpu0).Microseconds()) / (r.rps * dur.Seconds())
			}
			if err == nil && tg.name == "ingress" {
				// The whole process's heap objects (wrk's output parsing
				// too), so an upper bound for the proxy's.
				r.allocsPerReq = float64(heapAllocs()-allocs0) / (r.rps * dur.Seconds())
			}
			if profile != "" && tg.name == "ingress" && round == 0 {
				pprof.StopCPUProfile()
			}
			if err != nil {
				return fmt.Errorf("wrk %s: %w", tg.name, err)
			}
			fmt.Printf("round %d %-8s %8.0f req/s  p99 %7.2f ms  proxy CPU %5.1f us/req", round+1, tg.name, r.rps, r.p99ms, r.cpuPerReq)
			if tg.name == "ingress" {
				fmt.Printf("  heap allocations %.3f/req", r.allocsPerReq)
			}
			fmt.Println()
			got[tg.name] = append(got[tg.name], r)
		}
	}
	ing, ngx, direct := median(got["ingress"]), median(got["nginx"]), median(got["direct"])
	fmt.Printf("ingress: %.0f req/s p99 %.2f ms; nginx: %.0f req/s p99 %.2f ms; direct (one backend): %.0f req/s p99 %.2f ms (medians of %d rounds of wrk -t%d -c%d -d%s)\n",
		ing.rps, ing.p99ms, ngx.rps, ngx.p99ms, direct.rps, direct.p99ms, rounds, threads, conns, dur)
	fmt.Printf("ingress-bench: rps=%.0f p99_ms=%.2f nginx_rps=%.0f nginx_p99_ms=%.2f direct_rps=%.0f ratio_vs_nginx=%.2f cpu_us_per_req=%.1f nginx_cpu_us_per_req=%.1f\n",
		ing.rps, ing.p99ms, ngx.rps, ngx.p99ms, direct.rps, ing.rps/ngx.rps, ing.cpuPerReq, ngx.cpuPerReq)
	return nil
}

func mustAtoi(s string) int32 {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return int32(n)
}

const nginxConf = `worker_processes %[5]s;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  # Like the ingress proxy, never close a keep-alive connection for its
  # request count (the default 1000 would make wrk and nginx reconnect
  # several times a run).
  keepalive_requests 1000000;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream web {
    server 127.0.0.1:%[2]s;
    server 127.0.0.1:%[3]s;
    keepalive 256;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:%[4]s;
    location / {
      proxy_pass http://web;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
      proxy_next_upstream error timeout;
    }
  }
}
`

// startNginx runs nginx in the foreground on a free loopback port with a
// config of its own in a temporary directory.
func startNginx(backends []string) (port string, pid int, stop func(), err error) {
	dir, err := os.MkdirTemp("", "benchingress-nginx-")
	if err != nil {
		return "", 0, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", 0, nil, err
	}
	port = strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, dir, backends[0], backends[1], port, workers)), 0o644); err != nil {
		return "", 0, nil, err
	}
	cmd := exec.Command("nginx", "-c", conf, "-p", dir, "-g", "daemon off;")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", 0, nil, err
	}
	stop = func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		_ = os.RemoveAll(dir)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err == nil {
			c.Close()
			return port, cmd.Process.Pid, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", 0, nil, fmt.Errorf("nginx did not listen on 127.0.0.1:%s: %w", port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type wrkResult struct{ rps, p99ms, cpuPerReq, allocsPerReq float64 }

// heapAllocs is the number of heap objects this process allocated so far.
func heapAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

var (
	reRPS = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reP99 = regexp.MustCompile(`\s99%\s+([0-9.]+)(us|ms|s)`)
	reErr = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)|Socket errors: .*`)
)

func wrk(dur time.Duration, conns, threads int, url, header string) (wrkResult, error) {
	args := append(append([]string{}, wrkPrefix...), "wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", dur.String(),
		"--latency", "-H", header, url)
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("%w\n%s", err, out)
	}
	s := string(out)
	if m := reErr.FindString(s); m != "" {
		return wrkResult{}, fmt.Errorf("wrk saw errors (%s):\n%s", m, s)
	}
	rm, pm := reRPS.FindStringSubmatch(s), reP99.FindStringSubmatch(s)
	if rm == nil || pm == nil {
		return wrkResult{}, fmt.Errorf("cannot read wrk's output:\n%s", s)
	}
	rps, _ := strconv.ParseFloat(rm[1], 64)
	p99, _ := strconv.ParseFloat(pm[1], 64)
	switch pm[2] {
	case "us":
		p99 /= 1000
	case "s":
		p99 *= 1000
	}
	return wrkResult{rps: rps, p99ms: p99}, nil
}

// median takes each measure's median over the rounds on its own.
func median(rs []wrkResult) wrkResult {
	rps := make([]float64, len(rs))
	p99 := make([]float64, len(rs))
	cpu := make([]float64, len(rs))
	for i, r := range rs {
		rps[i], p99[i], cpu[i] = r.rps, r.p99ms, r.cpuPerReq
	}
	sort.Float64s(rps)
	sort.Float64s(p99)
	sort.Float64s(cpu)
	return wrkResult{rps: rps[len(rps)/2], p99ms: p99[len(p99)/2], cpuPerReq: cpu[len(cpu)/2]}
}

// processCPU is the user+system CPU time of process pid (and, with
// children, of its child processes: nginx's workers) from /proc.
func processCPU(pid int, children bool) (time.Duration, error) {
	const clockTick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	total := time.Duration(0)
	read := func(p string) (ppid int, cpu time.Duration, err error) {
		b, err := os.ReadFile(filepath.Join("/proc", p, "stat"))
		if err != nil {
			return 0, 0, err
		}
		// Fields after the command (which may hold spaces) in parentheses.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 13 {
			return 0, 0, fmt.Errorf("/proc/%s/stat: %d fields", p, len(f))
		}
		ppid, _ = strconv.Atoi(f[1])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		return ppid, time.Duration(ut+st) * clockTick, nil
	}
	_, cpu, err := read(strconv.Itoa(pid))
	if err != nil {
		return 0, err
	}
	total += cpu
	if !children {
		return total, nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if ppid, cpu, err := read(e.Name()); err == nil && ppid == pid {
			total += cpu
		}
	}
	return total, nil
}
