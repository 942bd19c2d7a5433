package ingress

import (
	"bufio"
	"bytes"
	"unsafe"
)

// fastRequest is a parsed fast-path request; its slices point into the
// connection's read buffer, valid until the next read from the client
// (the fast path reads nothing from the client while it proxies).
type fastRequest struct {
	host, path []byte
	head       bool // HEAD: the response has no body whatever it says
	replayable bool // GET, HEAD or OPTIONS (no body on the fast path)
	closeAfter bool // the client sent Connection: close
}

// Header names with a role on the fast path.
const (
	hdrKeep = iota
	hdrDrop // hop-by-hop or a forwarding header the proxy sets itself
	hdrHost
	hdrConnection
	hdrContentLength
	hdrTE
	hdrHandoff // needs the standard server (a body, an upgrade, 100-continue)
)

// headerRole classifies a request header name (case-insensitive).
func headerRole(name []byte) int {
	switch len(name) {
	case 2:
		if foldEq(name, "te") {
			return hdrTE
		}
	case 4:
		if foldEq(name, "host") {
			return hdrHost
		}
	case 6:
		if foldEq(name, "expect") {
			return hdrHandoff
		}
	case 7:
		if foldEq(name, "upgrade") {
			return hdrHandoff
		}
		if foldEq(name, "trailer") {
			return hdrDrop
		}
	case 9:
		if foldEq(name, "forwarded") {
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
		if foldEq(name, "http2-settings") {
			return hdrHandoff
		}
	case 15:
		if foldEq(name, "x-forwarded-for") {
			return hdrDrop
		}
	case 16:
		if foldEq(name, "proxy-connection") || foldEq(name, "x-forwarded-host") {
			return hdrDrop
		}
	case 17:
		if foldEq(name, "transfer-encoding") {
			return hdrHandoff
		}
		if foldEq(name, "x-forwarded-proto") {
			return hdrDrop
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

// foldEq compares b with lower, an ASCII lower-case string, ignoring case.
func foldEq(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// isToken is RFC 9110's tchar.
var isToken = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func validToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !isToken[c] {
			return false
		}
	}
	return true
}

// validValue is a field value: no control characters but tab.
func validValue(b []byte) bool {
	for _, c := range b {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// validTarget is an origin-form target the fast path routes exactly as
// net/http would: no percent-encoding (r.URL.Path is decoded), no
// fragment, printable ASCII only.
func validTarget(b []byte) bool {
	if len(b) == 0 || b[0] != '/' {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || c == '%' || c == '#' {
			return false
		}
	}
	return true
}

func validHost(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !(isToken[c] || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

type span struct{ line, name []byte }

// parseRequest parses the n-byte head at the front of br and, when the
// fast path can serve it, builds the upstream request head into fc.out,
// fills req and consumes the head. False leaves br untouched for the
// standard server.
func (fc *fastConn) parseRequest(br *bufio.Reader, n int, req *fastRequest) bool {
	head, _ := br.Peek(n)
	out, ok := appendUpstreamRequest(fc.out[:0], head, fc.clientIP, req)
	if !ok {
		return false
	}
	fc.out = out
	_, _ = br.Discard(n)
	return true
}

// appendUpstreamRequest parses head (a whole request head, through its
// blank line) and, when the fast path can serve it, fills req and appends
// the upstream request head to out. req's slices point into head.
func appendUpstreamRequest(out, head []byte, clientIP string, req *fastRequest) ([]byte, bool) {
	n := len(head)
	head = head[:n-2] // through the last header line's CRLF
	eol := bytes.Index(head, []byte("\r\n"))
	line := head[:eol]
	rest := head[eol+2:]
	// Request line: METHOD SP origin-form SP HTTP/1.1.
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return nil, false
	}
	method := line[:sp1]
	sp2 := bytes.IndexByte(line[sp1+1:], ' ')
	if sp2 < 0 {
		return nil, false
	}
	target := line[sp1+1 : sp1+1+sp2]
	if string(line[sp1+1+sp2+1:]) != "HTTP/1.1" || !validToken(method) || !validTarget(target) {
		return nil, false
	}
	switch string(method) {
	case "CONNECT", "PRI":
		return nil, false
	case "GET", "OPTIONS":
		req.replayable = true
	case "HEAD":
		req.replayable, req.head = true, true
	}
	req.path = target
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		req.path = target[:i]
	}

	var (
		lines    [maxFastHeaders]span
		nlines   int
		conn     [8][]byte // header names listed in Connection
		nconn    int
		hasHost  bool
		trailers bool
		zeroLen  bool
	)
	for len(rest) > 0 {
		eol := bytes.Index(rest, []byte("\r\n"))
		l := rest[:eol]
		rest = rest[eol+2:]
		colon := bytes.IndexByte(l, ':')
		if colon <= 0 || nlines == maxFastHeaders {
			return nil, false // obs-fold, no name, or too many: the standard server decides
		}
		name, value := l[:colon], trimOWS(l[colon+1:])
		if !validToken(name) || !validValue(value) {
			return nil, false
		}
		switch headerRole(name) {
		case hdrHandoff:
			return nil, false
		case hdrDrop:
			continue
		case hdrHost:
			if hasHost || !validHost(value) {
				return nil, false
			}
			hasHost, req.host = true, value
			continue
		case hdrContentLength:
			if zeroLen || string(value) != "0" {
				return nil, false // a body (or a repeated length) is the standard server's
			}
			zeroLen = true
			continue
		case hdrTE:
			trailers = trailers || hasToken(value, "trailers")
			continue
		case hdrConnection:
			for v := value; len(v) > 0; {
				var tok []byte
				tok, v = nextToken(v)
				switch {
				case len(tok) == 0:
				case foldEq(tok, "close"):
					req.closeAfter = true
				case foldEq(tok, "keep-alive"):
				case foldEq(tok, "upgrade") || nconn == len(conn):
					return nil, false
				default:
					conn[nconn] = tok
					nconn++
				}
			}
			continue
		}
		lines[nlines] = span{line: l, name: name}
		nlines++
	}
	if !hasHost {
		return nil, false
	}

	// The upstream head: what ReverseProxy with SetXForwarded sends.
	out = append(out, method...)
	out = append(out, ' ')
	out = append(out, target...)
	out = append(out, " HTTP/1.1\r\nHost: "...)
	out = append(out, req.host...)
	out = append(out, "\r\n"...)
next:
	for _, s := range lines[:nlines] {
		for _, c := range conn[:nconn] {
			if bytes.EqualFold(c, s.name) {
				continue next
			}
		}
		out = append(out, s.line...)
		out = append(out, "\r\n"...)
	}
	if clientIP != "" {
		out = append(out, "X-Forwarded-For: "...)
		out = append(out, clientIP...)
		out = append(out, "\r\n"...)
	}
	out = append(out, "X-Forwarded-Host: "...)
	out = append(out, req.host...)
	out = append(out, "\r\nX-Forwarded-Proto: http\r\n"...)
	if trailers {
		out = append(out, "Te: trailers\r\n"...)
	}
	switch {
	case zeroLen, string(method) == "POST", string(method) == "PUT", string(method) == "PATCH":
		out = append(out, "Content-Length: 0\r\n"...)
	}
	return append(out, "\r\n"...), true
}

// bytesString views b as a string for a lookup that does not keep it.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// nextToken splits the next comma-separated element off a list value.
func nextToken(v []byte) (tok, rest []byte) {
	if i := bytes.IndexByte(v, ','); i >= 0 {
		return trimOWS(v[:i]), v[i+1:]
	}
	return trimOWS(v), nil
}

// hasToken reports whether the comma-separated list v holds tok
// (lower-case), ignoring case.
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var t []byte
		t, v = nextToken(v)
		if foldEq(t, tok) {
			return true
		}
	}
	return false
}
