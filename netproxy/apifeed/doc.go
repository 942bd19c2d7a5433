// Package apifeed feeds a netproxy.Proxy from the cluster API: it watches
// Services and Endpoints through informers (proto/client) and turns them
// into netproxy's plain Service and Endpoints, resolving named targetPorts
// through the Endpoints' ports as kube-proxy does.
//
// It imports only proto/ and netproxy: the data path talks to the control
// plane through the public API only.
package apifeed
