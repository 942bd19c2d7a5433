//go:build linux

package ingress

// The fast path's event loops (Linux).
//
// Why not a goroutine per connection: measured with `make bench-ingress`
// (BENCHMARKS.md), the goroutine fast path still spent ~25 % more CPU per
// request than nginx, nearly all of it in the kernel. Go's poller always
// tries a read first and parks on EAGAIN, so each wait for the client's
// next request and for the backend's answer costs a read that fails
// (about one per request), and waking the parked goroutine makes the
// scheduler's spinning threads sleep and wake (nanosleep, futex) — in a
// VM, where a syscall is dear, that is the gap. These loops work as nginx
// does: one edge-triggered epoll set per loop (one loop per GOMAXPROCS),
// non-blocking sockets, a read only when epoll said there is data and
// until a short read says it is drained, so a request costs the four
// reads and writes it needs plus a share of one epoll_wait.
//
// A loop serves the common case in full: the request head the fast path
// parses (fastparse.go), the backend's answer with no body or a
// Content-Length body (streamed with backpressure when it does not fit
// the buffer), round robin, retries, keep-alive pools per loop. A request
// the fast path does not parse goes, with the bytes already read, to the
// standard server (handoff). A response the loop does not relay —
// chunked, delimited by close, 1xx — moves the connection and its backend
// connection, with their buffered bytes, to a goroutine running the
// fast path's blocking code (runConn, finishFast) for the rest of the
// connection's life. So every feature keeps one complete implementation.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	evBatch = 128
	// evTick is the longest a loop sleeps without looking at deadlines.
	evTick = 1000 // ms
	// evYield is how often a busy loop yields the processor.
	evYield = 4 * time.Millisecond
)

// Client connection states.
const (
	csIdle     = iota // reading a request head
	csUpstream        // the request is at a backend (dialling, sending, awaiting the head)
	csWrite           // writing the response (and streaming its body)
)

// evLoop is one event loop.
type evLoop struct {
	s       *fastServer
	epfd    int
	wakefd  int
	events  [evBatch]unix.EpollEvent
	slots   []evSlot // by file descriptor
	gen     uint32
	idle    map[netip.AddrPort][]*evUp // idle backend connections, last in first out
	now     time.Time
	swept   time.Time
	yielded time.Time

	mu       sync.Mutex
	incoming []evNew
	stop     bool // shutdown began: idle clients close, busy ones finish
	force    bool // shutdown's time is up: close everything
	exited   bool

	stopping bool
	busy     int // clients inside a request
	done     chan struct{}
}

type evNew struct {
	fd       int
	clientIP string
}

// evSlot maps a file descriptor to its connection; gen guards against an
// event for a descriptor closed and reused within one batch.
type evSlot struct {
	gen uint32
	c   *evConn
	u   *evUp
}

// evConn is a client connection on a loop.
type evConn struct {
	l        *evLoop
	fd       int
	clientIP string
	in       []byte // fastReadBuffer bytes; the unread ones are in[r:w]
	r, w     int
	canRead  bool // epoll said readable and no short read since
	canWrite bool
	state    int
	serving  bool // inside serveRequests (no recursion)
	deadline time.Time
	timed    bool // a head under way: the header timeout applies

	req      fastRequest
	reqOut   []byte // the upstream request head
	b        *Backend
	start    uint32
	attempt  int
	attempts int
	fresh    bool // this attempt is the retry on a fresh connection
	up       *evUp
	reused   bool
	lastErr  error

	wbuf      []byte // response bytes to write: wbuf[woff:]
	woff      int
	remaining int64 // body bytes still to stream from up
	upReuse   bool  // up may carry another request after this response
}

// evUp is a backend connection on a loop.
type evUp struct {
	fd         int
	ep         netip.AddrPort
	buf        []byte // upstreamReadBuffer bytes; unread ones are buf[r:w]
	r, w       int
	canRead    bool
	canWrite   bool
	connecting bool
	since      time.Time // dial start, or when it went idle
	owner      *evConn   // nil while idle in the pool
	wpend      []byte    // request bytes not yet written
}

// startLoops starts one loop per GOMAXPROCS; nil (and the goroutine fast
// path) when the kernel refuses epoll or eventfd.
func startLoops(s *fastServer) ([]*evLoop, error) {
	n := runtime.GOMAXPROCS(0)
	var loops []*evLoop
	for range n {
		l, err := newLoop(s)
		if err != nil {
			for _, l := range loops {
				l.closeFDs()
			}
			return nil, err
		}
		loops = append(loops, l)
	}
	return loops, nil
}

func newLoop(s *fastServer) (*evLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("ingress: epoll_create1: %w", err)
	}
	wfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("ingress: eventfd: %w", err)
	}
	l := &evLoop{s: s, epfd: epfd, wakefd: wfd, idle: map[netip.AddrPort][]*evUp{}, done: make(chan struct{})}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wfd), Pad: -1}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wfd, &ev); err != nil {
		l.closeFDs()
		return nil, fmt.Errorf("ingress: epoll_ctl eventfd: %w", err)
	}
	return l, nil
}

func (l *evLoop) closeFDs() {
	_ = unix.Close(l.epfd)
	_ = unix.Close(l.wakefd)
}

func (l *evLoop) wake() {
	var one = [8]byte{1}
	_, _ = unix.Write(l.wakefd, one[:])
}

// add gives the loop a client socket (a descriptor of its own); false
// (fd still the caller's) when the loop has ended.
func (l *evLoop) add(fd int, clientIP string) bool {
	l.mu.Lock()
	if l.exited || l.stop {
		l.mu.Unlock()
		return false
	}
	l.incoming = append(l.incoming, evNew{fd, clientIP})
	l.mu.Unlock()
	l.wake()
	return true
}

// shutdown asks the loop to close idle clients and finish busy ones;
// force closes everything.
func (l *evLoop) shutdown(force bool) {
	l.mu.Lock()
	l.stop = true
	l.force = l.force || force
	l.mu.Unlock()
	l.wake()
}

// register adds fd to the epoll set and the slot table.
func (l *evLoop) register(fd int, c *evConn, u *evUp) error {
	l.gen++
	if l.gen == 1<<32-1 {
		l.gen = 1 // Pad -1 marks the wake-up descriptor
	}
	for fd >= len(l.slots) {
		l.slots = append(l.slots, make([]evSlot, max(64, len(l.slots)))...)
	}
	l.slots[fd] = evSlot{gen: l.gen, c: c, u: u}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd), Pad: int32(l.gen)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.slots[fd] = evSlot{}
		return err
	}
	return nil
}

// forget removes fd from the loop without closing it.
func (l *evLoop) forget(fd int) {
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	l.slots[fd] = evSlot{}
}

func (l *evLoop) closeFD(fd int) {
	l.slots[fd] = evSlot{} // close removes it from the epoll set: ours is its only descriptor
	_ = unix.Close(fd)
}

// run is the loop: until shutdown has closed every client.
func (l *evLoop) run() error {
	defer func() {
		l.mu.Lock()
		l.exited = true
		pending := l.incoming
		l.incoming = nil
		l.mu.Unlock()
		for _, n := range pending {
			_ = unix.Close(n.fd)
		}
		for fd, sl := range l.slots {
			if sl.c != nil || sl.u != nil {
				_ = unix.Close(fd)
			}
		}
		l.slots = nil
		l.closeFDs()
		close(l.done)
	}()
	l.now = time.Now()
	l.swept = l.now
	for {
		// Busy, epoll has events at once: ask without telling the
		// scheduler (no syscall bookkeeping, no sysmon hand-off); only a
		// wait that will sleep goes through it.
		n, err := epollWaitNow(l.epfd, l.events[:])
		if n == 0 && err == nil {
			n, err = unix.EpollWait(l.epfd, l.events[:], evTick)
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("ingress: epoll_wait: %w", err)
		}
		l.now = time.Now()
		for i := range n {
			ev := &l.events[i]
			if ev.Pad == -1 {
				if l.control() {
					return nil
				}
				continue
			}
			fd := int(ev.Fd)
			if fd >= len(l.slots) || l.slots[fd].gen != uint32(ev.Pad) {
				continue // closed earlier in this batch
			}
			sl := l.slots[fd]
			in := ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
			out := ev.Events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0
			if sl.c != nil {
				sl.c.canRead = sl.c.canRead || in
				sl.c.canWrite = sl.c.canWrite || out
				sl.c.onEvent()
			} else {
				sl.u.canRead = sl.u.canRead || in
				sl.u.canWrite = sl.u.canWrite || out
				sl.u.onEvent(l)
			}
		}
		if l.now.Sub(l.swept) >= time.Second {
			l.sweep()
		}
		if l.now.Sub(l.yielded) >= evYield {
			// A busy loop never blocks: yield before sysmon preempts it
			// with a signal (after 10 ms), which costs more.
			l.yielded = l.now
			runtime.Gosched()
		}
		if l.stopping && l.busy == 0 {
			return nil
		}
	}
}

// control handles the wake-up descriptor: new clients and shutdown; true
// means exit now.
func (l *evLoop) control() bool {
	var b [8]byte
	_, _ = unix.Read(l.wakefd, b[:])
	l.mu.Lock()
	news := l.incoming
	l.incoming = nil
	stop, force := l.stop, l.force
	l.mu.Unlock()
	for _, nw := range news {
		c := &evConn{l: l, fd: nw.fd, clientIP: nw.clientIP, in: make([]byte, fastReadBuffer), deadline: l.now.Add(fastIdleTimeout)}
		if stop || l.register(nw.fd, c, nil) != nil {
			_ = unix.Close(nw.fd)
		}
	}
	if force {
		return true
	}
	if stop && !l.stopping {
		l.stopping = true
		for _, sl := range l.slots {
			if c := sl.c; c != nil && c.state == csIdle {
				c.close()
			}
		}
	}
	return false
}

// sweep enforces the timeouts: client idle and header, dial, and the
// pool's idle limit.
func (l *evLoop) sweep() {
	l.swept = l.now
	for _, sl := range l.slots {
		switch {
		case sl.c != nil:
			if sl.c.state == csIdle && l.now.After(sl.c.deadline) {
				sl.c.close()
			}
		case sl.u != nil:
			u := sl.u
			if u.owner == nil && l.now.Sub(u.since) >= upstreamIdleTimeout {
				l.dropIdle(u)
			} else if u.owner != nil && u.connecting && l.now.Sub(u.since) >= upstreamDialTimeout {
				u.owner.upFailed(&dialError{fmt.Errorf("dial tcp %s: i/o timeout", u.ep)})
			}
		}
	}
}

// getUp takes an idle connection to ep from the pool.
func (l *evLoop) getUp(ep netip.AddrPort) *evUp {
	list := l.idle[ep]
	if len(list) == 0 {
		return nil
	}
	u := list[len(list)-1]
	list[len(list)-1] = nil
	l.idle[ep] = list[:len(list)-1]
	return u
}

func (l *evLoop) putUp(u *evUp) {
	list := l.idle[u.ep]
	if l.stopping || len(list) >= maxIdlePerEndpoint {
		l.closeUp(u)
		return
	}
	u.owner, u.wpend, u.since = nil, nil, l.now
	u.r, u.w = 0, 0
	l.idle[u.ep] = append(list, u)
}

// dropIdle closes an idle pooled connection and takes it out of the pool.
func (l *evLoop) dropIdle(u *evUp) {
	list := l.idle[u.ep]
	for i, x := range list {
		if x == u {
			copy(list[i:], list[i+1:])
			list[len(list)-1] = nil
			l.idle[u.ep] = list[:len(list)-1]
			break
		}
	}
	l.closeUp(u)
}

func (l *evLoop) closeUp(u *evUp) {
	if u.fd >= 0 {
		l.closeFD(u.fd)
		u.fd = -1
	}
}

// dial starts a non-blocking connect to ep.
func (l *evLoop) dial(ep netip.AddrPort) (*evUp, error) {
	var sa unix.Sockaddr
	family := unix.AF_INET
	if a := ep.Addr().Unmap(); a.Is4() {
		sa = &unix.SockaddrInet4{Port: int(ep.Port()), Addr: a.As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(ep.Port()), Addr: a.As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, &dialError{fmt.Errorf("dial tcp %s: socket: %w", ep, err)}
	}
	// As net.Dialer sets them: no Nagle delay, keep-alive probes.
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 30)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 30)
	u := &evUp{fd: fd, ep: ep, buf: make([]byte, upstreamReadBuffer), since: l.now}
	switch err := unix.Connect(fd, sa); {
	case err == nil:
	case errors.Is(err, unix.EINPROGRESS):
		u.connecting = true
	default:
		_ = unix.Close(fd)
		return nil, &dialError{fmt.Errorf("dial tcp %s: %w", ep, err)}
	}
	if err := l.register(fd, nil, u); err != nil {
		_ = unix.Close(fd)
		return nil, &dialError{fmt.Errorf("dial tcp %s: epoll: %w", ep, err)}
	}
	return u, nil
}

// fdConn makes a net.Conn (in Go's poller) of a socket descriptor, which
// it takes over.
func fdConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "")
	defer f.Close()
	return net.FileConn(f) // a duplicate; f's closes with f
}

// takeFD detaches c's socket for a loop: a duplicate descriptor (still
// non-blocking), c itself closed.
func takeFD(c net.Conn) (int, error) {
	defer c.Close()
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("ingress: %T has no descriptor", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	return fd, derr
}

// rawRead and rawWrite are read(2) and write(2) on a non-blocking socket:
// they never wait, so they skip the scheduler's syscall bookkeeping (as
// the runtime's own netpoll does), which per call costs more than the
// call when every request makes four.
func rawRead(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

func rawWrite(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// epollWaitNow is epoll_wait with a zero timeout (it never blocks).
func epollWaitNow(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		if e == unix.EINTR {
			return 0, nil
		}
		return -1, e
	}
	return int(n), nil
}
