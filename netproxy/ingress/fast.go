package ingress

// The HTTP port's fast path. On Linux its connections are served by
// event loops (evloop_linux.go); this file's goroutine per connection
// serves them elsewhere, and on Linux the connections a loop moves off
// (a response it does not relay).
//
// Why not only net/http's server with httputil.ReverseProxy: measured
// with `make bench-ingress` (BENCHMARKS.md), that path served half of
// nginx's rate on the same machine. Per request it costs the server's
// background read, the Transport's read and write loop goroutines with
// their channel handoffs, two header maps, a context and a request copy
// per attempt; the profile was syscalls plus that machinery, with the
// routing lookup invisible. The fast path serves the common request —
// HTTP/1.1, origin-form target, no body, no Upgrade, Expect or
// Transfer-Encoding, a head that fits one buffer — in the connection's own
// goroutine: it parses the head in place in the read buffer, writes the
// upstream request into a pooled backend connection's buffer (one write),
// and relays the response head and body (one write when the response is
// already buffered). Everything else (h2c, WebSocket and other upgrades,
// request bodies, HTTP/1.0, absolute-form or percent-encoded targets,
// oversize or unusual heads) is handed, with the bytes already read, to
// the standard http.Server and ReverseProxy for the rest of the connection
// (handoffListener), so each of those features keeps its one complete
// implementation and its tests.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// fastReadBuffer bounds a request head the fast path parses; a
	// bigger one is handed off (net/http allows up to MaxHeaderBytes).
	fastReadBuffer  = 8 << 10
	fastWriteBuffer = 16 << 10
	// maxFastHeaders bounds the header lines of a fast-path request.
	maxFastHeaders = 64
	// Same as the standard server's (newServer).
	fastIdleTimeout   = 120 * time.Second
	fastHeaderTimeout = 30 * time.Second
)

var (
	// errHeadTooBig: the head does not fit the buffer or is not one the
	// fast path parses; the standard server takes the connection.
	errHeadTooBig = errors.New("ingress: request head for the standard server")
	crlfcrlf      = []byte("\r\n\r\n")
	lflf          = []byte("\n\n")
)

// Connection states for shutdown: an idle connection (waiting for a
// request) may be closed at once; a busy one finishes its request.
const (
	connIdle int32 = iota
	connBusy
	connClosed
)

// fastServer accepts the HTTP port's connections and serves them on the
// fast path, handing the rest to the standard server through handoff.
type fastServer struct {
	proxy   *Proxy
	handoff *handoffListener
	log     *slog.Logger

	closing atomic.Bool
	// handoffs counts connections given to the standard server, looped
	// those given to an event loop, moved those a loop gave to a
	// goroutine (tests read them to know which path served them).
	handoffs atomic.Int64
	looped   atomic.Int64
	moved    atomic.Int64
	// noLoops serves every connection with a goroutine (tests of that
	// path on Linux).
	noLoops bool
	// loops serve connections on Linux (evloop_linux.go); without them
	// each connection gets a goroutine (serveConn).
	loops    []*evLoop
	nextLoop int
	mu       sync.Mutex
	conns    map[*fastConn]struct{}
	active   int           // connections inside a request
	drained  chan struct{} // closed when active drops to 0 after shutdown began
}

// fastConn is one client connection on the fast path.
type fastConn struct {
	c        net.Conn
	cw       countingWriter
	br       *bufio.Reader
	bw       *bufio.Writer
	state    atomic.Int32
	clientIP string
	out      []byte // the upstream request head, rebuilt per request
	hout     []byte // the client's response head, rebuilt per response
	// deadlineSet is when the idle deadline was last set; headerDeadline
	// that the header timeout replaced it since.
	deadlineSet    time.Time
	headerDeadline bool
}

// countingWriter counts bytes that reached the client, so an error before
// any byte of a response can still be answered with a 502.
type countingWriter struct {
	c net.Conn
	n int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.c.Write(p)
	w.n += int64(n)
	return n, err
}

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, fastReadBuffer) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, fastWriteBuffer) }}
)

func newFastServer(p *Proxy, handoff *handoffListener, log *slog.Logger) *fastServer {
	return &fastServer{proxy: p, handoff: handoff, log: log, conns: map[*fastConn]struct{}{}}
}

// serve accepts until ln is closed by shutdown, then waits for the
// event loops to finish.
func (s *fastServer) serve(ln net.Listener) error {
	var loops []*evLoop
	if !s.noLoops {
		var err error
		if loops, err = startLoops(s); err != nil {
			s.log.Warn("ingress: no event loops; a goroutine per connection", "err", err)
		}
	}
	loopErrs := make(chan error, len(loops))
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		for _, l := range loops {
			l.closeFDs()
		}
		return nil
	}
	s.loops = loops
	s.mu.Unlock()
	for _, l := range loops {
		go func() {
			err := l.run()
			if err != nil {
				// Said now, not only when Serve returns: the loop's
				// connections are gone and new ones go to goroutines.
				s.log.Error("ingress: event loop failed", "err", err)
			}
			loopErrs <- err
		}()
	}
	errs := []error{s.accept(ln)}
	for range loops {
		errs = append(errs, <-loopErrs)
	}
	return errors.Join(errs...)
}

func (s *fastServer) accept(ln net.Listener) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosing() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: back off as
			// net/http does, instead of spinning or giving up.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("ingress: accept failed; retrying", "err", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if len(s.loops) > 0 {
			var ip string
			if host, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
				ip = host
			}
			fd, err := takeFD(c)
			if err != nil {
				s.log.Warn("ingress: taking an accepted connection", "err", err)
				continue
			}
			l := s.loops[s.nextLoop]
			s.nextLoop = (s.nextLoop + 1) % len(s.loops)
			if l.add(fd, ip) {
				s.looped.Add(1)
				continue
			}
			// That loop has ended (shutdown, or it failed): a goroutine.
			if c, err = fdConn(fd); err != nil {
				s.log.Warn("ingress: taking an accepted connection", "err", err)
				continue
			}
		}
		fc := &fastConn{c: c}
		if !s.track(fc) {
			_ = c.Close()
			return nil
		}
		go s.serveConn(fc)
	}
}

func (s *fastServer) isClosing() bool { return s.closing.Load() }

func (s *fastServer) track(fc *fastConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.conns[fc] = struct{}{}
	return true
}

func (s *fastServer) begin() {
	s.mu.Lock()
	s.active++
	s.mu.Unlock()
}

func (s *fastServer) end() {
	s.mu.Lock()
	s.active--
	if s.active == 0 && s.drained != nil {
		close(s.drained)
		s.drained = nil
	}
	s.mu.Unlock()
}

func (s *fastServer) untrack(fc *fastConn) {
	s.mu.Lock()
	delete(s.conns, fc)
	s.mu.Unlock()
}

// shutdown closes ln and the idle connections, then waits (until ctx
// ends) for busy ones to finish their request; those then close.
func (s *fastServer) shutdown(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	s.closing.Store(true)
	err := ln.Close()
	for fc := range s.conns {
		if fc.state.CompareAndSwap(connIdle, connClosed) {
			_ = fc.c.Close()
		}
	}
	done := make(chan struct{})
	if s.active == 0 {
		close(done)
	} else {
		s.drained = done
	}
	loops := s.loops
	s.mu.Unlock()
	for _, l := range loops {
		l.shutdown(false)
	}
	select {
	case <-done:
	case <-ctx.Done():
		s.mu.Lock()
		for fc := range s.conns {
			_ = fc.c.Close()
		}
		s.mu.Unlock()
	}
	for _, l := range loops {
		select {
		case <-l.done:
		case <-ctx.Done():
			l.shutdown(true)
			<-l.done
		}
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// serveConn serves requests until the client leaves, a response requires
// closing, or one request needs the standard server.
func (s *fastServer) serveConn(fc *fastConn) { s.runConn(fc, nil, nil) }

// runConn is serveConn for a connection whose first bytes may have been
// read elsewhere (pre, the event loop's buffer) and whose first request
// may already be under way (first, which reports whether to go on).
func (s *fastServer) runConn(fc *fastConn, pre []byte, first func(*fastConn) bool) {
	handedOff := false
	fc.br = readerPool.Get().(*bufio.Reader)
	if len(pre) > 0 {
		fc.br.Reset(io.MultiReader(bytes.NewReader(pre), fc.c))
	} else {
		fc.br.Reset(fc.c)
	}
	fc.cw.c = fc.c
	fc.bw = writerPool.Get().(*bufio.Writer)
	fc.bw.Reset(&fc.cw)
	if fc.clientIP == "" {
		if host, _, err := net.SplitHostPort(fc.c.RemoteAddr().String()); err == nil {
			fc.clientIP = host
		}
	}
	defer func() {
		s.untrack(fc)
		fc.bw.Reset(nil)
		writerPool.Put(fc.bw)
		if !handedOff {
			_ = fc.c.Close()
			fc.br.Reset(nil)
			readerPool.Put(fc.br)
		}
	}()
	if first != nil {
		fc.state.Store(connBusy)
		s.begin()
		keep := first(fc)
		s.end()
		if !keep || !fc.state.CompareAndSwap(connBusy, connIdle) {
			return
		}
	}
	for {
		if s.isClosing() {
			return
		}
		// The idle deadline moves at most once a second: resetting a
		// timer per request costs more than a second of slack is worth.
		if now := time.Now(); fc.headerDeadline || now.Sub(fc.deadlineSet) > time.Second {
			_ = fc.c.SetReadDeadline(now.Add(fastIdleTimeout))
			fc.deadlineSet, fc.headerDeadline = now, false
		}
		n, err := fc.readHead()
		if err != nil && !errors.Is(err, errHeadTooBig) {
			return // the client left, timed out, or sent a broken head
		}
		if !fc.state.CompareAndSwap(connIdle, connBusy) {
			return // shutdown closed it
		}
		s.begin()
		var req fastRequest
		fast := err == nil && fc.parseRequest(fc.br, n, &req)
		if !fast {
			// The standard server takes the connection with every byte
			// read so far; its timeouts apply from here.
			_ = fc.c.SetReadDeadline(time.Time{})
			s.handoffs.Add(1)
			handedOff = s.handoff.give(&bufferedConn{Conn: fc.c, r: fc.br})
			s.end()
			return
		}
		keep := s.proxy.serveFast(fc, &req)
		s.end()
		if !keep || !fc.state.CompareAndSwap(connBusy, connIdle) {
			return
		}
	}
}

// readHead reads until the buffer holds a whole request head and returns
// its length (through the blank line); errHeadTooBig when it does not
// fit the buffer.
func (fc *fastConn) readHead() (int, error) {
	scanned, timed := 0, false
	for {
		buf, _ := fc.br.Peek(fc.br.Buffered())
		from := max(scanned-3, 0)
		if i := bytes.Index(buf[from:], crlfcrlf); i >= 0 {
			return from + i + 4, nil
		}
		scanned = len(buf)
		if len(buf) == fc.br.Size() {
			return 0, errHeadTooBig
		}
		// Not a request line's first byte (TLS on the HTTP port, say), or
		// lines ended by a bare LF: the standard server answers those.
		if len(buf) > 0 && (buf[0] < 'A' || buf[0] > 'Z' || bytes.Contains(buf, lflf)) {
			return 0, errHeadTooBig
		}
		if len(buf) > 0 && !timed {
			// A head under way gets the header timeout, not the idle one.
			_ = fc.c.SetReadDeadline(time.Now().Add(fastHeaderTimeout))
			timed, fc.headerDeadline = true, true
		}
		if _, err := fc.br.Peek(len(buf) + 1); err != nil {
			if len(buf) > 0 && errors.Is(err, bufio.ErrBufferFull) {
				return 0, errHeadTooBig
			}
			return 0, err
		}
	}
}

// handoffListener is the standard server's listener: connections the fast
// path gives up on, with the bytes it already read.
type handoffListener struct {
	addr   net.Addr
	ch     chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *handoffListener) give(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// bufferedConn reads what the fast path buffered before the connection.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
