package testutil

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// handedOut holds the ports this process has given out: two calls in a
// row (--api-port and --raft-port of one node) must not get the same
// port, which the portFree check alone allows since nothing is bound
// to the first until the daemon starts.
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// FreePort is a loopback TCP port for a daemon a test starts with a fixed
// port (ctl's --api-port, --raft-port, ...), which the daemon binds itself
// after this function let go of it.
//
// A port from the OS (":0") comes from the ephemeral range, the same range
// the kernel gives every outgoing connection: with many processes dialling
// (a full test run on two cores), one of them took such a port in that gap
// and the daemon failed with "address already in use". So the port is
// picked below the ephemeral range, where only another explicit bind can
// take it, and checked free (TCP and UDP, for gossip) before it is handed out.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := PickPort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// PickPort is FreePort for programs without a testing.TB (benchmarks).
func PickPort() (int, error) {
	lo, hi := 20000, ephemeralLow()
	if hi-lo < 1000 {
		lo, hi = 10000, 20000
	}
	for i := 0; i < 200; i++ {
		p := lo + rand.IntN(hi-lo)
		if claim(p) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free loopback port in %d-%d after 200 tries", lo, hi)
}

// claim marks p handed out if no earlier call in this process got it and
// it is free now.
func claim(p int) bool {
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports[p] || !portFree(p) {
		return false
	}
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	handedOut.ports[p] = true
	return true
}

func portFree(p int) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	return u.Close() == nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}
