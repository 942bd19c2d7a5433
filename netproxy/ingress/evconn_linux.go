//go:build linux

package ingress

// The event loops' connections (evloop_linux.go says why the loops):
// each client connection is a small state machine — reading a head
// (csIdle), at a backend (csUpstream: dialling, sending, awaiting the
// response head), writing the response (csWrite, streaming the body) —
// driven by its own and its backend connection's readiness.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// onEvent handles readiness of a backend connection.
func (u *evUp) onEvent(l *evLoop) {
	c := u.owner
	if c == nil {
		// Idle in the pool: the backend closed it (or sent what nobody
		// asked for). Either way it cannot carry a request.
		if u.canRead {
			var b [1]byte
			if _, err := rawRead(u.fd, b[:]); errors.Is(err, unix.EAGAIN) {
				u.canRead = false
				return
			}
			l.dropIdle(u)
		}
		return
	}
	if u.connecting {
		if !u.canWrite {
			return
		}
		u.connecting = false
		if soErr, err := unix.GetsockoptInt(u.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || soErr != 0 {
			if err == nil {
				err = syscall.Errno(soErr)
			}
			c.upFailed(&dialError{fmt.Errorf("dial tcp %s: %w", u.ep, err)})
			return
		}
	}
	switch c.state {
	case csUpstream:
		c.sendRequest()
	case csWrite:
		c.flush()
	}
}

// onEvent handles readiness of a client connection.
func (c *evConn) onEvent() {
	switch c.state {
	case csIdle:
		c.serveRequests()
	case csWrite:
		c.flush()
	}
	// csUpstream: the client's bytes wait until the response is out.
}

// serveRequests reads and serves request heads while the connection is
// idle; it returns when it has to wait.
func (c *evConn) serveRequests() {
	if c.serving {
		return
	}
	c.serving = true
	defer func() { c.serving = false }()
	for c.state == csIdle && c.fd >= 0 {
		buf := c.in[c.r:c.w]
		if i := bytes.Index(buf, crlfcrlf); i >= 0 && buf[0] >= 'A' && buf[0] <= 'Z' && !bytes.Contains(buf[:i+4], lflf) {
			c.begin(i + 4)
			continue
		}
		// Not a request line's first byte (TLS on the HTTP port, say), or
		// lines ended by a bare LF: the standard server answers those.
		if len(buf) > 0 && (buf[0] < 'A' || buf[0] > 'Z' || bytes.Contains(buf, lflf)) {
			c.handoff()
			return
		}
		if c.r > 0 {
			c.w = copy(c.in, buf)
			c.r = 0
		}
		if c.w == len(c.in) {
			c.handoff() // a head bigger than the fast path's buffer
			return
		}
		if c.w > 0 && !c.timed {
			// A head under way gets the header timeout, not the idle one.
			c.deadline, c.timed = c.l.now.Add(fastHeaderTimeout), true
		}
		if !c.canRead {
			return
		}
		n, err := rawRead(c.fd, c.in[c.w:])
		switch {
		case n > 0:
			if c.w+n < len(c.in) {
				c.canRead = false // a short read: drained until epoll says more
			}
			c.w += n
		case err == nil || !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR):
			c.close() // the client left, or the socket failed
			return
		case errors.Is(err, unix.EAGAIN):
			c.canRead = false
		}
	}
}

// begin starts serving the n-byte head at in[r:].
func (c *evConn) begin(n int) {
	head := c.in[c.r : c.r+n]
	c.req = fastRequest{}
	out, ok := appendUpstreamRequest(c.reqOut[:0], head, c.clientIP, &c.req)
	if !ok {
		c.handoff()
		return
	}
	c.reqOut = out
	c.r += n
	if c.r == c.w {
		c.r, c.w = 0, 0 // req's slices stay valid: nothing is read before the response
	}
	c.timed = false
	c.state = csUpstream
	c.l.busy++
	b := c.l.s.proxy.table.Load().Route(bytesString(c.req.host), bytesString(c.req.path))
	switch {
	case b == nil:
		c.errorPage(404, "Not Found", "404 no ingress rule matches this host and path")
		return
	case len(b.Endpoints) == 0:
		c.errorPage(503, "Service Unavailable", "503 backend "+b.Name+" has no ready endpoints")
		return
	}
	// The retry policy is serveFast's (and retryTransport's).
	c.b, c.start, c.attempt, c.fresh, c.lastErr = b, b.start(), 0, false, nil
	c.attempts = min(MaxAttempts, len(b.Endpoints))
	if c.req.replayable {
		c.attempts = max(c.attempts, 2)
	}
	c.tryEndpoint()
}

// tryEndpoint sends the request to the endpoint of the current attempt.
func (c *evConn) tryEndpoint() {
	for c.attempt < c.attempts {
		ep := c.b.pick(c.start, c.attempt)
		var u *evUp
		if !c.fresh {
			u = c.l.getUp(ep)
		}
		c.reused = u != nil
		if u == nil {
			var err error
			if u, err = c.l.dial(ep); err != nil {
				c.lastErr = err
				c.fresh = false
				c.attempt++
				continue
			}
		}
		c.up, u.owner, u.wpend = u, c, c.reqOut
		if !u.connecting {
			c.sendRequest()
		}
		return
	}
	c.l.s.log.Debug("ingress: backend request failed", "backend", c.b.Name, "err", c.lastErr)
	c.errorPage(502, "Bad Gateway", "502 backend "+c.b.Name+" did not answer")
}

// upFailed: the attempt failed before any byte reached the client.
func (c *evConn) upFailed(err error) {
	u := c.up
	c.up = nil
	c.l.closeUp(u)
	c.lastErr = err
	if c.reused && c.req.replayable && !c.fresh {
		// A pooled connection the backend had closed: once more on a
		// fresh one to the same endpoint before moving on.
		c.fresh = true
		c.tryEndpoint()
		return
	}
	c.fresh = false
	var de *dialError
	if !errors.As(err, &de) && !c.req.replayable {
		c.attempt = c.attempts // not safe to send twice
	}
	c.attempt++
	c.tryEndpoint()
}

// sendRequest writes the request head and reads the response head.
func (c *evConn) sendRequest() {
	u := c.up
	for len(u.wpend) > 0 {
		if !u.canWrite {
			return
		}
		n, err := rawWrite(u.fd, u.wpend)
		if n > 0 {
			u.wpend = u.wpend[n:]
			if len(u.wpend) > 0 {
				u.canWrite = false
			}
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			u.canWrite = false
			return
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		c.upFailed(fmt.Errorf("write to %s: %w", u.ep, err))
		return
	}
	for {
		buf := u.buf[u.r:u.w]
		if i := bytes.Index(buf, crlfcrlf); i >= 0 {
			c.gotHead(i + 4)
			return
		}
		if u.r > 0 {
			u.w = copy(u.buf, buf)
			u.r = 0
		}
		if u.w == len(u.buf) {
			c.upFailed(errUpstreamLarge)
			return
		}
		if !u.canRead {
			return
		}
		n, err := rawRead(u.fd, u.buf[u.w:])
		switch {
		case n > 0:
			if u.w+n < len(u.buf) {
				u.canRead = false
			}
			u.w += n
		case errors.Is(err, unix.EAGAIN):
			u.canRead = false
			return
		case errors.Is(err, unix.EINTR):
		case err == nil:
			c.upFailed(io.ErrUnexpectedEOF) // closed before (all of) a head
			return
		default:
			c.upFailed(fmt.Errorf("read from %s: %w", u.ep, err))
			return
		}
	}
}

// gotHead handles the n-byte response head at the front of up's buffer.
func (c *evConn) gotHead(n int) {
	u := c.up
	var h respHead
	head, err := appendResponseHead(c.wbuf[:0], u.buf[u.r:u.r+n], &c.req, &h)
	if err != nil {
		c.upFailed(err)
		return
	}
	switch {
	case h.status < 200, !c.req.head && h.status != 204 && h.status != 304 && (h.chunked || h.length < 0):
		// Informational, chunked or close-delimited: the goroutine path.
		c.toGoroutine()
		return
	case c.req.head || h.status == 204 || h.status == 304:
		c.remaining = 0
	default:
		c.remaining = h.length
	}
	c.wbuf, c.woff = head, 0
	c.upReuse = !h.upClose
	u.r += n
	k := int(min(c.remaining, int64(u.w-u.r)))
	c.wbuf = append(c.wbuf, u.buf[u.r:u.r+k]...)
	u.r += k
	c.remaining -= int64(k)
	c.state = csWrite
	c.flush()
}

// flush writes wbuf, then streams the rest of the body from up, then
// ends the request.
func (c *evConn) flush() {
	for c.woff < len(c.wbuf) {
		if !c.canWrite {
			return
		}
		n, ok := c.writeClient(c.wbuf[c.woff:])
		c.woff += n
		if !ok {
			return
		}
	}
	u := c.up
	for c.remaining > 0 {
		if u.r == u.w {
			u.r, u.w = 0, 0
			if !u.canRead {
				return
			}
			n, err := rawRead(u.fd, u.buf)
			switch {
			case n > 0:
				if n < len(u.buf) {
					u.canRead = false
				}
				u.w = n
			case errors.Is(err, unix.EAGAIN):
				u.canRead = false
				return
			case errors.Is(err, unix.EINTR):
				continue
			default:
				c.abort() // the body ended early: the client sees its connection close
				return
			}
		}
		if !c.canWrite {
			return
		}
		k := int(min(c.remaining, int64(u.w-u.r)))
		n, ok := c.writeClient(u.buf[u.r : u.r+k])
		u.r += n
		c.remaining -= int64(n)
		if !ok {
			return
		}
	}
	c.finish()
}

// writeClient makes one write of p to the client. It returns the bytes
// written and false when flush must return: the socket is full (canWrite
// off until epoll says otherwise) or the client left mid-response (the
// connection is aborted). A short write turns canWrite off too.
func (c *evConn) writeClient(p []byte) (int, bool) {
	n, err := rawWrite(c.fd, p)
	switch {
	case n > 0:
		if n < len(p) {
			c.canWrite = false
		}
		return n, true
	case errors.Is(err, unix.EAGAIN):
		c.canWrite = false
		return 0, false
	case errors.Is(err, unix.EINTR):
		return 0, true
	default:
		c.abort()
		return 0, false
	}
}

// finish ends a request whose response is out.
func (c *evConn) finish() {
	l := c.l
	if u := c.up; u != nil {
		c.up = nil
		if c.upReuse && u.r == u.w {
			l.putUp(u)
		} else {
			l.closeUp(u)
		}
	}
	c.wbuf, c.woff = c.wbuf[:0], 0
	l.busy--
	if c.req.closeAfter || l.stopping {
		c.close()
		return
	}
	c.state = csIdle
	c.deadline = l.now.Add(fastIdleTimeout)
	c.serveRequests()
}

// abort closes the client and its backend connection mid-response.
func (c *evConn) abort() {
	if c.up != nil {
		c.l.closeUp(c.up)
		c.up = nil
	}
	c.l.busy--
	c.close()
}

// errorPage answers the current request with what http.Error writes.
func (c *evConn) errorPage(code int, status, body string) {
	w := append(c.wbuf[:0], "HTTP/1.1 "...)
	w = strconv.AppendInt(w, int64(code), 10)
	w = append(w, " "+status+"\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: "...)
	w = strconv.AppendInt(w, int64(len(body)+1), 10)
	if c.req.closeAfter {
		w = append(w, "\r\nConnection: close"...)
	}
	w = append(w, "\r\n\r\n"...)
	if !c.req.head {
		w = append(w, body...)
		w = append(w, '\n')
	}
	c.wbuf, c.woff, c.remaining, c.up = w, 0, 0, nil
	c.state = csWrite
	c.flush()
}

// close closes the client connection (not its backend connection).
func (c *evConn) close() {
	if c.fd >= 0 {
		c.l.closeFD(c.fd)
		c.fd = -1
	}
}

// handoff gives the connection, with its unread bytes, to the standard
// server.
func (c *evConn) handoff() {
	l := c.l
	if c.state != csIdle {
		l.busy-- // begin counted it
		c.state = csIdle
	}
	pre := bytes.Clone(c.in[c.r:c.w])
	fd := c.fd
	l.forget(fd)
	c.fd = -1
	conn, err := fdConn(fd)
	if err != nil {
		l.s.log.Warn("ingress: handing a connection to the standard server", "err", err)
		return
	}
	l.s.handoffs.Add(1)
	bc := &bufferedConn{Conn: conn, r: io.MultiReader(bytes.NewReader(pre), conn)}
	go func() {
		if !l.s.handoff.give(bc) {
			_ = conn.Close()
		}
	}()
}

// toGoroutine moves the connection in the middle of a request — the
// response head is in up's buffer, nothing reached the client — and its
// backend connection to the fast path's blocking code.
func (c *evConn) toGoroutine() {
	l, u := c.l, c.up
	pre, upre := bytes.Clone(c.in[c.r:c.w]), bytes.Clone(u.buf[u.r:u.w])
	cfd, ufd := c.fd, u.fd
	l.forget(cfd)
	l.forget(ufd)
	c.fd, u.fd, c.up = -1, -1, nil
	l.busy--
	cconn, err := fdConn(cfd)
	if err != nil {
		_ = unix.Close(ufd)
		l.s.log.Warn("ingress: moving a connection off the event loop", "err", err)
		return
	}
	uconn, err := fdConn(ufd)
	if err != nil {
		_ = cconn.Close()
		l.s.log.Warn("ingress: moving a connection off the event loop", "err", err)
		return
	}
	fc := &fastConn{c: cconn, clientIP: c.clientIP}
	uc := &upConn{c: uconn, ep: u.ep, bw: newUpWriter(uconn)}
	uc.br = newUpReader(io.MultiReader(bytes.NewReader(upre), uconn))
	req := fastRequest{head: c.req.head, replayable: c.req.replayable, closeAfter: c.req.closeAfter}
	name, s := c.b.Name, l.s
	s.moved.Add(1)
	if !s.track(fc) {
		_ = cconn.Close()
		_ = uconn.Close()
		return
	}
	go s.runConn(fc, pre, func(fc *fastConn) bool { return s.proxy.finishFast(fc, uc, &req, name) })
}
