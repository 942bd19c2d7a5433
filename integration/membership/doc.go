// Package membership tests gossip membership (agent/gossip) against a real
// control plane (integration/cptest): the node lifecycle controller takes
// gossip's confirmed deaths as its first signal.
package membership
