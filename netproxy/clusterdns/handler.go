package clusterdns

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Handler answers DNS queries: cluster names from the Zone, the rest
// through the Upstream.
type Handler struct {
	Zone     *Zone
	Upstream *Upstream
	Log      *slog.Logger
	// Timeout bounds the upstream work of one query.
	Timeout time.Duration
	// Allow, when set, says whether a client address may query; others
	// get REFUSED.
	Allow func(netip.Addr) bool
}

// maxCNAMEChain bounds how far an ExternalName chain is followed.
const maxCNAMEChain = 8

// ServeDNS implements dns.Handler.
func (h *Handler) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	if h.Allow != nil {
		ap, err := netip.ParseAddrPort(w.RemoteAddr().String())
		if err != nil || !h.Allow(ap.Addr().Unmap()) {
			m := new(dns.Msg)
			m.SetRcode(req, dns.RcodeRefused)
			_ = w.WriteMsg(m)
			return
		}
	}
	resp := h.Reply(req, !tcp)
	if err := w.WriteMsg(resp); err != nil && h.Log != nil {
		h.Log.Debug("dns reply not sent", "err", err)
	}
}

// Reply builds the answer to req; udp: it goes back over UDP, within the
// size the client accepts.
func (h *Handler) Reply(req *dns.Msg, udp bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		if len(req.Question) != 1 {
			m.Rcode = dns.RcodeFormatError
		}
		return m
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if q.Qclass != dns.ClassINET {
		m.Rcode = dns.RcodeNotImplemented
		return m
	}
	ans, ok := h.Zone.Lookup(name, q.Qtype)
	if !ok {
		ctx, cancel := context.WithTimeout(context.Background(), h.timeout())
		defer cancel()
		h.forward(ctx, m, dns.Question{Name: name, Qtype: q.Qtype, Qclass: q.Qclass})
		h.fit(req, m, udp)
		return m
	}
	m.Authoritative = true
	m.Rcode, m.Answer, m.Ns, m.Extra = ans.Rcode, ans.Answer, ans.Ns, ans.Extra
	if ans.CNAME == "" {
		h.fit(req, m, udp)
		return m
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout())
	defer cancel()
	// An ExternalName: follow the CNAME so a stub resolver gets addresses.
	for i := 0; ans.CNAME != "" && i < maxCNAMEChain; i++ {
		target := ans.CNAME
		if ans, ok = h.Zone.Lookup(target, q.Qtype); ok {
			m.Answer = append(m.Answer, ans.Answer...)
			m.Rcode = ans.Rcode
			continue
		}
		r, err := h.Upstream.Resolve(ctx, dns.Question{Name: target, Qtype: q.Qtype, Qclass: q.Qclass})
		if err != nil {
			// The CNAME alone: the client may resolve the target itself.
			break
		}
		m.Answer, m.Ns = append(m.Answer, r.Answer...), r.Ns
		m.Rcode = r.Rcode
	}
	h.fit(req, m, udp)
	return m
}

func (h *Handler) timeout() time.Duration {
	if h.Timeout > 0 {
		return h.Timeout
	}
	return 5 * time.Second
}

// forward fills m from the upstream: its answer, or SERVFAIL.
func (h *Handler) forward(ctx context.Context, m *dns.Msg, q dns.Question) {
	r, err := h.Upstream.Resolve(ctx, q)
	if err != nil {
		if h.Log != nil {
			h.Log.Debug("upstream failed", "name", q.Name, "err", err)
		}
		m.Rcode = dns.RcodeServerFailure
		return
	}
	m.Rcode, m.Answer, m.Ns, m.Extra = r.Rcode, r.Answer, r.Ns, r.Extra
}

// fit answers EDNS0 with EDNS0 and truncates a UDP reply larger than the
// client accepts (the client then retries over TCP).
func (h *Handler) fit(req, m *dns.Msg, udp bool) {
	size := dns.MinMsgSize
	if o := req.IsEdns0(); o != nil {
		size = int(o.UDPSize())
		// The sections may share the zone's slices: append to a copy.
		m.Extra = m.Extra[:len(m.Extra):len(m.Extra)]
		m.SetEdns0(o.UDPSize(), false)
	}
	if udp {
		m.Truncate(max(size, dns.MinMsgSize))
	}
}
