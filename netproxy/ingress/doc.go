// Package ingress is the built-in ingress controller every worker runs
// (networking.k8s.io/v1 Ingress, IngressClass "skiff"): an HTTP and HTTPS
// reverse proxy on the node's ports 80 and 443 that routes by host and path
// straight to the ready endpoints of the Services the Ingresses name.
//
// The parts, each replaceable on its own:
//
//   - Table (table.go): the immutable routing table, a pure function of
//     Ingresses, Services, Endpoints and TLS certificates. Host rules are
//     exact, then one-label wildcards ("*.example.com"), then host-less;
//     paths are Exact or Prefix (Kubernetes' element-wise prefix;
//     ImplementationSpecific is Prefix); the longest match wins and an
//     Exact path beats a Prefix of the same length.
//   - Proxy (proxy.go): an http.Handler over the current table (an
//     atomic pointer, so a configuration change swaps the whole table and
//     never touches connections already open) built on
//     httputil.ReverseProxy with one tuned Transport. Each request picks
//     the backend's next endpoint (round robin); a connect failure, or a
//     bodiless idempotent request whose connection broke before a
//     response, is retried on the next endpoint.
//   - Fast path (fast.go, fastparse.go, fastupstream.go, evloop_linux.go,
//     evconn_linux.go):
//     the HTTP port's connections start here. A plain HTTP/1.1 request
//     without a body is parsed in place and proxied over a pool of
//     keep-alive backend connections (same table, round robin, retries
//     and X-Forwarded-* as the Proxy). On Linux edge-triggered epoll
//     event loops (one per GOMAXPROCS, as nginx runs a worker per core)
//     serve it with no goroutine hand-off and no read that finds nothing;
//     a response they do not relay (chunked, close-delimited, 1xx) moves
//     the connection to a goroutine running the same blocking code that
//     serves every connection elsewhere. Anything else — h2c, WebSocket
//     and other upgrades, request bodies, HTTP/1.0, unusual heads — hands
//     the connection, with the bytes already read, to the standard server
//     below. fast.go and evloop_linux.go say why.
//   - Server (server.go): the listeners: HTTP/1.1 and h2c on the HTTP
//     port (behind the fast path), TLS with SNI (certificates from the
//     Ingresses' TLS Secrets) and HTTP/2 on the HTTPS port.
//   - Feed (feed.go): informers for Ingresses, Services and Endpoints; it
//     gets the referenced TLS Secrets by name (the node authorizer lets a
//     node read only the Secrets an Ingress references) and rebuilds the
//     table after each change.
//
// Status (status.loadBalancer.ingress) is written by the control plane's
// leader, not by the nodes, so workers never race each other for it.
package ingress
