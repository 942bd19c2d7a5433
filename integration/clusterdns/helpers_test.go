package clusterdns_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// This test binary is re-run inside the lab (the test's own process is in
// the machine's network namespace, which must not dial lab addresses):
// as the upstream resolver on the Admin host, and as a DNS client in a
// pod's network namespace.
const (
	envUpstream = "SKIFF_DNSLAB_UPSTREAM" // listen address (ip:port)
	envQuery    = "SKIFF_DNSLAB_QUERY"    // name to ask
	envType     = "SKIFF_DNSLAB_TYPE"     // A, SRV, PTR …
	envServer   = "SKIFF_DNSLAB_SERVER"   // ip:port asked
	envWait     = "SKIFF_DNSLAB_WAIT"     // ask until an answer comes, print when (Unix ms)
)

// upstreamRecords is what the Admin host's resolver knows.
var upstreamRecords = map[string]string{
	"www.example.test.": "192.0.2.80",
	"pay.example.test.": "192.0.2.81",
}

func runUpstream(addr string) int {
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		if ip, ok := upstreamRecords[strings.ToLower(q.Name)]; ok && q.Qtype == dns.TypeA {
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(ip)}}
		} else if !ok {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	fmt.Println("upstream serving", addr)
	if err := (&dns.Server{Addr: addr, Net: "udp", Handler: h}).ListenAndServe(); err != nil {
		fmt.Println("upstream:", err)
		return 2
	}
	return 0
}

// runQuery asks one question and prints "RCODE value…" (values sorted:
// "A 10.96.0.1", "CNAME x.", "SRV 0 100 80 x."), or with envWait the
// milliseconds until the first NOERROR answer with records.
func runQuery(out io.Writer) int {
	name, server := dns.Fqdn(os.Getenv(envQuery)), os.Getenv(envServer)
	qtype := dns.StringToType[os.Getenv(envType)]
	c := &dns.Client{Timeout: time.Second}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	start := time.Now()
	for {
		r, _, err := c.Exchange(m, server)
		if err != nil {
			if os.Getenv(envWait) != "" && time.Since(start) < 10*time.Second {
				continue
			}
			fmt.Fprintln(out, "ERROR", err)
			return 0
		}
		if os.Getenv(envWait) != "" {
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
				if time.Since(start) < 10*time.Second {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				fmt.Fprintln(out, "TIMEOUT", dns.RcodeToString[r.Rcode])
				return 0
			}
			fmt.Fprintf(out, "ANSWERED_AT_MS %d\n", time.Now().UnixMilli())
			return 0
		}
		var vals []string
		for _, rr := range r.Answer {
			h := rr.Header()
			vals = append(vals, dns.TypeToString[h.Rrtype]+" "+strings.TrimPrefix(rr.String(), h.String()))
		}
		slices.Sort(vals)
		fmt.Fprintln(out, strings.Join(append([]string{dns.RcodeToString[r.Rcode]}, vals...), "|"))
		return 0
	}
}
