// Package clusterdns is the root test of cluster DNS on a lab cluster
// (integration/hostlab): pods on two workers resolve Services, headless
// Services, StatefulSet hostnames, ExternalNames and outside names (a
// resolver the test runs on the lab's Admin host) through their node's
// own DNS server, and get /etc/resolv.conf by their dnsPolicy.
package clusterdns
