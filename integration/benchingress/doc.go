// Command benchingress is `make bench-ingress`: wrk (the same client, the
// same settings, one run after the other) drives the built-in ingress
// controller's proxy, nginx configured as the same reverse proxy (an
// upstream of the same backends, keep-alive to them, X-Forwarded-For),
// and the backends straight (wrk's own round robin is not available, so
// "direct" is one backend: the ceiling of one backend process).
//
// The backends are two plain Go HTTP servers on loopback in a child
// process (this binary re-executed), so the proxies under test never
// share a Go runtime with them. The ingress proxy is the package's own
// Proxy with a Table built from a real Ingress, Service and Endpoints
// objects (netproxy/ingress.Build), serving on loopback in this process;
// nginx (Debian) runs with as many workers as the ingress proxy has event
// loops. By default (-pin) wrk runs on a CPU of its own (taskset) and
// everything measured on the others, as a client on another machine
// would; -pin=false shares all CPUs. Everything stays on
// loopback. Each proxy's CPU time per request (from /proc: this process
// for the ingress proxy, nginx's master and workers) is printed too: on a
// shared machine it moves far less than req/s. It ends with one line:
//
//	ingress-bench: rps=N p99_ms=N nginx_rps=N nginx_p99_ms=N direct_rps=N ratio_vs_nginx=N cpu_us_per_req=N nginx_cpu_us_per_req=N
package main
