package ingress

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

const (
	// upstreamReadBuffer bounds a response head the fast path relays; a
	// bigger one is answered 502 (nginx's proxy_buffer_size does the
	// same, at 4-8 KiB).
	upstreamReadBuffer  = 32 << 10
	upstreamWriteBuffer = 4 << 10
	// The pool keeps this many idle connections per endpoint (enough for
	// every client connection of a busy node to have one), each for at
	// most upstreamIdleTimeout.
	maxIdlePerEndpoint  = 512
	upstreamIdleTimeout = 60 * time.Second
	upstreamDialTimeout = 2 * time.Second
	// max1xx bounds the informational responses relayed before the final one.
	max1xx = 8
)

var (
	errUpstreamHead  = errors.New("ingress: malformed response head from the backend")
	errUpstreamLarge = errors.New("ingress: response head from the backend too large")
)

// upConn is a keep-alive connection to one endpoint.
type upConn struct {
	c    net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	ep   netip.AddrPort
	idle time.Time // when it went back to the pool
}

// upPool is the fast path's pool of idle backend connections per
// endpoint, last in first out (the warmest connection first).
type upPool struct {
	dialer net.Dialer
	mu     sync.Mutex
	idle   map[netip.AddrPort][]*upConn
	count  int
	sweep  *time.Timer
	closed bool
}

func newUpPool() *upPool {
	return &upPool{dialer: net.Dialer{Timeout: upstreamDialTimeout, KeepAlive: 30 * time.Second},
		idle: map[netip.AddrPort][]*upConn{}}
}

// get returns an idle connection to ep (reused) or dials one.
func (p *upPool) get(ep netip.AddrPort) (*upConn, bool, error) {
	now := time.Now()
	p.mu.Lock()
	for l := p.idle[ep]; len(l) > 0; l = p.idle[ep] {
		uc := l[len(l)-1]
		p.idle[ep] = l[:len(l)-1]
		p.count--
		if now.Sub(uc.idle) < upstreamIdleTimeout {
			p.mu.Unlock()
			return uc, true, nil
		}
		_ = uc.c.Close()
	}
	p.mu.Unlock()
	uc, err := p.dial(ep)
	return uc, false, err
}

func (p *upPool) dial(ep netip.AddrPort) (*upConn, error) {
	c, err := p.dialer.Dial("tcp", ep.String())
	if err != nil {
		return nil, &dialError{err}
	}
	return &upConn{c: c, ep: ep, br: newUpReader(c), bw: newUpWriter(c)}, nil
}

func newUpReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, upstreamReadBuffer) }
func newUpWriter(w io.Writer) *bufio.Writer { return bufio.NewWriterSize(w, upstreamWriteBuffer) }

// put returns a connection whose last response ended cleanly.
func (p *upPool) put(uc *upConn) {
	uc.idle = time.Now()
	p.mu.Lock()
	if p.closed || len(p.idle[uc.ep]) >= maxIdlePerEndpoint {
		p.mu.Unlock()
		_ = uc.c.Close()
		return
	}
	p.idle[uc.ep] = append(p.idle[uc.ep], uc)
	p.count++
	if p.sweep == nil {
		p.sweep = time.AfterFunc(upstreamIdleTimeout/2, p.expire)
	}
	p.mu.Unlock()
}

// expire closes connections idle too long (an endpoint that went away
// keeps none open), and runs again while any are left.
func (p *upPool) expire() {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for ep, l := range p.idle {
		kept := l[:0]
		for _, uc := range l {
			if now.Sub(uc.idle) < upstreamIdleTimeout {
				kept = append(kept, uc)
				continue
			}
			_ = uc.c.Close()
			p.count--
		}
		if len(kept) == 0 {
			delete(p.idle, ep)
		} else {
			p.idle[ep] = kept
		}
	}
	p.sweep = nil
	if p.count > 0 && !p.closed {
		p.sweep = time.AfterFunc(upstreamIdleTimeout/2, p.expire)
	}
}

// close closes every idle connection; later puts close theirs.
func (p *upPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, l := range p.idle {
		for _, uc := range l {
			_ = uc.c.Close()
		}
	}
	p.idle, p.count = map[netip.AddrPort][]*upConn{}, 0
	if p.sweep != nil {
		p.sweep.Stop()
		p.sweep = nil
	}
}

// serveFast proxies one fast-path request; false means close the client
// connection.
func (p *Proxy) serveFast(fc *fastConn, req *fastRequest) bool {
	b := p.table.Load().Route(bytesString(req.host), bytesString(req.path))
	if b == nil {
		return fc.errorPage(req, 404, "Not Found", "404 no ingress rule matches this host and path")
	}
	if len(b.Endpoints) == 0 {
		return fc.errorPage(req, 503, "Service Unavailable", "503 backend "+b.Name+" has no ready endpoints")
	}
	// The retry policy is retryTransport's: the next endpoint after a
	// failed connect, and for GET/HEAD/OPTIONS also after a connection
	// that broke before any response.
	attempts := min(MaxAttempts, len(b.Endpoints))
	if req.replayable {
		attempts = max(attempts, 2)
	}
	start := b.start()
	var err error
	for i := 0; i < attempts; i++ {
		ep := b.pick(start, i)
		var uc *upConn
		var reused bool
		uc, reused, err = p.pool.get(ep)
		if err != nil {
			continue
		}
		var sent bool
		sent, err = p.exchange(fc, uc, req)
		if err == nil {
			return !req.closeAfter
		}
		_ = uc.c.Close()
		if sent {
			return false // part of the response reached the client
		}
		if reused && req.replayable {
			// A pooled connection the backend had closed: once more on a
			// fresh one to the same endpoint before moving on.
			if uc, err = p.pool.dial(ep); err == nil {
				if sent, err = p.exchange(fc, uc, req); err == nil {
					return !req.closeAfter
				}
				_ = uc.c.Close()
				if sent {
					return false
				}
			}
		}
		var de *dialError
		if !errors.As(err, &de) && !req.replayable {
			break
		}
	}
	p.log.Debug("ingress: backend request failed", "backend", b.Name, "err", err)
	return fc.errorPage(req, 502, "Bad Gateway", "502 backend "+b.Name+" did not answer")
}

// exchange sends the request on uc and relays the response. sent reports
// whether any byte of the response reached the client (then an error
// cannot become a 502). On success uc is back in the pool or closed.
func (p *Proxy) exchange(fc *fastConn, uc *upConn, req *fastRequest) (sent bool, err error) {
	if _, err := uc.bw.Write(fc.out); err != nil {
		return false, err
	}
	if err := uc.bw.Flush(); err != nil {
		return false, err
	}
	return p.relay(fc, uc, req)
}

// relay is exchange after the request went out: it relays the response
// (its head may already be in uc's buffer) and pools or closes uc.
func (p *Proxy) relay(fc *fastConn, uc *upConn, req *fastRequest) (sent bool, err error) {
	before := fc.cw.n
	reusable, err := relayResponse(fc, uc, req)
	if err != nil {
		if fc.cw.n == before {
			fc.bw.Reset(&fc.cw) // drop the partial head; the caller answers
			return false, err
		}
		return true, err
	}
	if err := fc.bw.Flush(); err != nil {
		_ = uc.c.Close()
		return true, err
	}
	if reusable && uc.br.Buffered() == 0 {
		p.pool.put(uc)
	} else {
		_ = uc.c.Close()
	}
	return true, nil
}

// finishFast serves the rest of a request the event loop began: the
// response head from the backend is in uc's buffer, nothing has reached
// the client yet. False means close the client connection.
func (p *Proxy) finishFast(fc *fastConn, uc *upConn, req *fastRequest, backend string) bool {
	sent, err := p.relay(fc, uc, req)
	if err == nil {
		return !req.closeAfter
	}
	_ = uc.c.Close()
	if sent {
		return false
	}
	p.log.Debug("ingress: backend request failed", "backend", backend, "err", err)
	return fc.errorPage(req, 502, "Bad Gateway", "502 backend "+backend+" did not answer")
}

// respHead is what the relay needs from a response head.
type respHead struct {
	status    int
	length    int64 // -1: none
	chunked   bool
	upClose   bool // the backend closes after this response
	headBytes int
}

// relayResponse copies the response to req (1xx first) from uc to the
// client's buffer, its hop-by-hop headers removed, and reports whether uc
// may carry another request.
func relayResponse(fc *fastConn, uc *upConn, req *fastRequest) (reusable bool, err error) {
	for range max1xx + 1 {
		var h respHead
		if err := writeResponseHead(fc, uc, req, &h); err != nil {
			return false, err
		}
		_, _ = uc.br.Discard(h.headBytes)
		if h.status >= 100 && h.status < 200 {
			if err := fc.bw.Flush(); err != nil {
				return false, err
			}
			continue
		}
		switch {
		case req.head || h.status == 204 || h.status == 304:
			return !h.upClose, nil
		case h.chunked:
			return !h.upClose, relayChunked(fc, uc)
		case h.length >= 0:
			return !h.upClose, relayN(fc, uc, h.length)
		default:
			// Delimited by the backend closing: so is the client's copy.
			req.closeAfter = true
			err := relayN(fc, uc, -1)
			return false, err
		}
	}
	return false, fmt.Errorf("%w: more than %d informational responses", errUpstreamHead, max1xx)
}

// writeResponseHead reads a whole response head (without consuming it)
// and writes the client's version to fc.bw.
func writeResponseHead(fc *fastConn, uc *upConn, req *fastRequest, h *respHead) error {
	n, err := peekHead(uc.br)
	if err != nil {
		return err
	}
	raw, _ := uc.br.Peek(n)
	out, err := appendResponseHead(fc.hout[:0], raw, req, h)
	if err != nil {
		return err
	}
	fc.hout = out
	_, _ = fc.bw.Write(out)
	return nil
}

// appendResponseHead parses raw, a whole response head through its blank
// line, into h and appends the client's version of it to out.
func appendResponseHead(out, raw []byte, req *fastRequest, h *respHead) ([]byte, error) {
	n := len(raw)
	h.headBytes, h.length = n, -1
	raw = raw[:n-2]
	eol := bytes.Index(raw, []byte("\r\n"))
	line, rest := raw[:eol], raw[eol+2:]
	// HTTP/1.x SP 3DIGIT [SP reason]
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return nil, fmt.Errorf("%w: status line %q", errUpstreamHead, line)
	}
	http10 := line[7] == '0'
	if line[7] != '0' && line[7] != '1' {
		return nil, fmt.Errorf("%w: status line %q", errUpstreamHead, line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil || status < 100 {
		return nil, fmt.Errorf("%w: status line %q", errUpstreamHead, line)
	}
	if status == 101 {
		return nil, fmt.Errorf("%w: 101 Switching Protocols to a request without Upgrade", errUpstreamHead)
	}
	h.status = status
	informational := status < 200
	var (
		lines     [128]span
		nlines    int
		conn      [8][]byte
		nconn     int
		keepAlive bool
	)
	for len(rest) > 0 {
		eol := bytes.Index(rest, []byte("\r\n"))
		l := rest[:eol]
		rest = rest[eol+2:]
		colon := bytes.IndexByte(l, ':')
		if colon <= 0 || nlines == len(lines) {
			return nil, fmt.Errorf("%w: header line %q", errUpstreamHead, l)
		}
		name, value := l[:colon], trimOWS(l[colon+1:])
		if !validToken(name) || !validValue(value) {
			return nil, fmt.Errorf("%w: header line %q", errUpstreamHead, l)
		}
		switch respHeaderRole(name) {
		case hdrConnection:
			for v := value; len(v) > 0; {
				var tok []byte
				tok, v = nextToken(v)
				switch {
				case len(tok) == 0:
				case foldEq(tok, "close"):
					h.upClose = true
				case foldEq(tok, "keep-alive"):
					keepAlive = true
				case nconn < len(conn):
					conn[nconn] = tok
					nconn++
				}
			}
			continue
		case hdrContentLength:
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || value[0] == '+' || (h.length >= 0 && h.length != n) {
				return nil, fmt.Errorf("%w: Content-Length %q", errUpstreamHead, value)
			}
			h.length = n
		case hdrTransferEncoding:
			if !foldEq(value, "chunked") {
				return nil, fmt.Errorf("%w: Transfer-Encoding %q (only chunked is relayed)", errUpstreamHead, value)
			}
			h.chunked = true
			continue // written below, once
		case hdrDrop:
			continue // hop-by-hop
		}
		lines[nlines] = span{line: l, name: name}
		nlines++
	}
	if http10 && !keepAlive {
		h.upClose = true
	}
	if h.chunked {
		h.length = -1
		if http10 {
			return nil, fmt.Errorf("%w: chunked HTTP/1.0 response", errUpstreamHead)
		}
	}
	out = append(out, "HTTP/1.1 "...)
	out = append(out, line[9:]...)
	out = append(out, "\r\n"...)
next:
	for _, s := range lines[:nlines] {
		if h.chunked && foldEq(s.name, "content-length") {
			continue // Transfer-Encoding wins (RFC 9112 6.3)
		}
		for _, c := range conn[:nconn] {
			if bytes.EqualFold(c, s.name) {
				continue next
			}
		}
		out = append(out, s.line...)
		out = append(out, "\r\n"...)
	}
	if h.chunked && !req.head && status != 204 && status != 304 {
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	}
	closeDelimited := !informational && !h.chunked && h.length < 0 && !req.head && status != 204 && status != 304
	if !informational && (req.closeAfter || closeDelimited) {
		out = append(out, "Connection: close\r\n"...)
	}
	return append(out, "\r\n"...), nil
}

const hdrTransferEncoding = hdrHandoff + 1

// respHeaderRole classifies a response header name: hop-by-hop ones are
// dropped (Trailer stays: the chunked body passes with its trailers).
func respHeaderRole(name []byte) int {
	switch len(name) {
	case 2:
		if foldEq(name, "te") {
			return hdrDrop
		}
	case 7:
		if foldEq(name, "upgrade") {
			return hdrDrop
		}
	case 10:
		if foldEq(name, "connection") {
			return hdrConnection
		}
		if foldEq(name, "keep-alive") {
			return hdrDrop
		}
	case 14:
		if foldEq(name, "content-length") {
			return hdrContentLength
		}
	case 16:
		if foldEq(name, "proxy-connection") {
			return hdrDrop
		}
	case 17:
		if foldEq(name, "transfer-encoding") {
			return hdrTransferEncoding
		}
	case 18:
		if foldEq(name, "proxy-authenticate") {
			return hdrDrop
		}
	case 19:
		if foldEq(name, "proxy-authorization") {
			return hdrDrop
		}
	}
	return hdrKeep
}

// peekHead waits until br holds a whole head and returns its length.
func peekHead(br *bufio.Reader) (int, error) {
	scanned := 0
	for {
		buf, _ := br.Peek(br.Buffered())
		from := max(scanned-3, 0)
		if i := bytes.Index(buf[from:], crlfcrlf); i >= 0 {
			return from + i + 4, nil
		}
		scanned = len(buf)
		if len(buf) == br.Size() {
			return 0, errUpstreamLarge
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return 0, errUpstreamLarge
			}
			if len(buf) == 0 && errors.Is(err, io.EOF) {
				return 0, io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
}

// relayN copies n body bytes (n < 0: until the backend closes), flushing
// the client's buffer whenever the next read would wait, so a streamed
// response reaches the client as it comes (ReverseProxy with
// FlushInterval 0 does the same for responses of unknown length).
func relayN(fc *fastConn, uc *upConn, n int64) error {
	for n != 0 {
		if uc.br.Buffered() == 0 {
			if err := fc.bw.Flush(); err != nil {
				return err
			}
			if _, err := uc.br.Peek(1); err != nil {
				if n < 0 && errors.Is(err, io.EOF) {
					return nil
				}
				if errors.Is(err, io.EOF) {
					return io.ErrUnexpectedEOF
				}
				return err
			}
		}
		k := uc.br.Buffered()
		if n >= 0 && int64(k) > n {
			k = int(n)
		}
		buf, _ := uc.br.Peek(k)
		if _, err := fc.bw.Write(buf); err != nil {
			return err
		}
		_, _ = uc.br.Discard(k)
		if n > 0 {
			n -= int64(k)
		}
	}
	return nil
}

// relayChunked copies a chunked body with its trailers, re-framing each
// chunk (extensions dropped, as net/http does).
func relayChunked(fc *fastConn, uc *upConn) error {
	var size [20]byte
	for {
		line, err := readLine(fc, uc)
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		line = trimOWS(line)
		if len(line) == 0 || len(line) > 15 {
			return fmt.Errorf("%w: chunk size %q", errUpstreamHead, line)
		}
		n, err := strconv.ParseUint(string(line), 16, 64)
		if err != nil {
			return fmt.Errorf("%w: chunk size %q", errUpstreamHead, line)
		}
		_, _ = fc.bw.Write(strconv.AppendUint(size[:0], n, 16))
		_, _ = fc.bw.WriteString("\r\n")
		if n == 0 {
			// Trailers, then the blank line that ends the body.
			for {
				l, err := readLine(fc, uc)
				if err != nil {
					return err
				}
				if len(l) > 0 && (bytes.IndexByte(l, ':') <= 0 || !validValue(l)) {
					return fmt.Errorf("%w: trailer %q", errUpstreamHead, l)
				}
				_, _ = fc.bw.Write(l)
				_, _ = fc.bw.WriteString("\r\n")
				if len(l) == 0 {
					return nil
				}
			}
		}
		if err := relayN(fc, uc, int64(n)); err != nil {
			return err
		}
		if l, err := readLine(fc, uc); err != nil || len(l) != 0 {
			return fmt.Errorf("%w: no CRLF after a chunk (%v)", errUpstreamHead, err)
		}
		_, _ = fc.bw.WriteString("\r\n")
	}
}

// readLine reads one CRLF-terminated line of a chunked body (without the
// CRLF), flushing the client first if it has to wait.
func readLine(fc *fastConn, uc *upConn) ([]byte, error) {
	if uc.br.Buffered() == 0 {
		if err := fc.bw.Flush(); err != nil {
			return nil, err
		}
	}
	l, err := uc.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if len(l) < 2 || l[len(l)-2] != '\r' {
		return nil, fmt.Errorf("%w: bare LF in a chunked body", errUpstreamHead)
	}
	return l[:len(l)-2], nil
}

// errorPage answers with what http.Error writes; false closes.
func (fc *fastConn) errorPage(req *fastRequest, code int, status, body string) bool {
	bw := fc.bw
	var num [20]byte
	_, _ = bw.WriteString("HTTP/1.1 ")
	_, _ = bw.Write(strconv.AppendInt(num[:0], int64(code), 10))
	_, _ = bw.WriteString(" " + status + "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: ")
	_, _ = bw.Write(strconv.AppendInt(num[:0], int64(len(body)+1), 10))
	if req.closeAfter {
		_, _ = bw.WriteString("\r\nConnection: close")
	}
	_, _ = bw.WriteString("\r\n\r\n")
	if !req.head {
		_, _ = bw.WriteString(body)
		_, _ = bw.WriteString("\n")
	}
	return bw.Flush() == nil && !req.closeAfter
}
