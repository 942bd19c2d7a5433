// Command benchdns measures a node's cluster DNS server (make bench-dns).
//
// dnsperf (Debian) sends one query set — cluster Service names (A),
// headless Services (A), named ports (SRV) and external names already in
// the node's cache — at the node's DNS handler (netproxy/clusterdns, a
// zone of 1,000 Services) on loopback, and in the same run at a bare
// miekg/dns server answering the same replies from a fixed map: the
// library's ceiling. Throughput is dnsperf at full speed in paired rounds
// (qps and ceiling_qps are medians, ratio the median of the rounds'
// ratios); p99 is from dnsperf's per-query latencies at a fixed rate. It
// ends with one line:
//
//	dns-bench: qps=N p99_us=N ceiling_qps=N ratio=N
package main
