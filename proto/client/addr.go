package client

import (
	"net"
	"net/netip"
	"strings"
)

// DefaultAPIPort is the control nodes' API port, meant when an address
// names none: `ctl join … 10.0.0.1` dials 10.0.0.1:7443 (gRPC alone would
// take 443, the HTTPS port).
const DefaultAPIPort = "7443"

// WithDefaultPort returns addr with DefaultAPIPort added when it has no
// port: "10.0.0.1" and "cp1.example" get ":7443", an IPv6 address its
// brackets too ("fd00::1" and "[fd00::1]" → "[fd00::1]:7443"). Addresses
// with a port, and gRPC targets with a scheme ("dns:///…", "unix:…"), are
// returned as they are.
func WithDefaultPort(addr string) string {
	addr = strings.TrimSpace(addr)
	if addr == "" || strings.Contains(addr, "://") || strings.HasPrefix(addr, "unix:") {
		return addr
	}
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	host := strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	if strings.Contains(host, ":") {
		if _, err := netip.ParseAddr(host); err != nil {
			return addr // neither host:port nor an IPv6 address: let the dial say what is wrong
		}
	}
	return net.JoinHostPort(host, DefaultAPIPort)
}

// withDefaultPorts applies WithDefaultPort to every address.
func withDefaultPorts(addrs []string) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = WithDefaultPort(a)
	}
	return out
}
