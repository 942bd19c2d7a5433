// Package monitoring tests what an operator watches a cluster with: every
// daemon's Prometheus metrics scraped by the real Prometheus (Debian
// package), the metrics ports' authorization, the agents' usage samples
// (ctl top, the HPA) under a real CPU load, and JSON logs. Its in-process
// cluster of real nodes also runs the end-to-end test of service account
// token refresh in a running pod (satoken_test.go).
package monitoring
