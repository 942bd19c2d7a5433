// Package ctrltest runs controllers against a real in-process API server
// (integration/api/apitest) for the controllers' own tests, with a small
// pod "kubelet" stand-in that marks pods Running and Ready (or lets a test
// drive their phase), so a controller's logic can be tested without the
// scheduler and hollow nodes. Cluster-level behaviour (scheduling, leader
// changes) is tested with integration/cptest.
package ctrltest
