package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// Member roles in MemberInfo.
const (
	MemberRoleControl = "control"
	MemberRoleWorker  = "worker"
)

// MemberInfo is what a node's gossip member is started with.
type MemberInfo struct {
	Name, Role  string
	Advertise   string // IP other members reach this node at
	BindAddress string
	// APIAddress is a control node's API (host:port); empty for workers.
	APIAddress string
	// Key is the cluster gossip key (from the store on control nodes, from
	// the join answer on workers).
	Key []byte
	// Seeds returns the API addresses (host:port) of the control nodes
	// known now; the member joins at the gossip port of those hosts.
	Seeds func(context.Context) ([]string, error)
	// PodCIDR, on workers, returns the node's pod range ("" while it has
	// none); the member adds it to its metadata once there is one.
	PodCIDR func(context.Context) (string, error)
	// ClusterCIDR, on control nodes, reads the cluster's pod network range
	// from the store; the member carries it in its metadata, where workers
	// learn it (no worker flag names it).
	ClusterCIDR func(context.Context) (string, error)
}

// ControlMember is a control node as the membership sees it.
type ControlMember struct {
	Name string
	// APIAddress is its API (host:port); ClusterCIDR the cluster's pod
	// range it read from the store ("" before it did).
	APIAddress, ClusterCIDR string
}

// Membership is a node's running gossip member as this package sees it
// (agent/gossip, wired by cmd/ctl; controlplane may not import it).
type Membership interface {
	// DeadSince: see nodelifecycle.MemberHealth.
	DeadSince(node string) (time.Time, bool)
	// ControlNodes are the control nodes alive in the membership now.
	ControlNodes() []ControlMember
	// ApplyKeys makes the member's gossip key ring exactly keys, keys[0]
	// the one it encrypts with (see GossipKeyring).
	ApplyKeys(keys [][]byte) error
	// KeyHolders counts, per key fingerprint, the live members that hold
	// the key and those that encrypt with it (from their metadata), and the
	// live members in all.
	KeyHolders() (holders, primaries map[string]int, members int)
	// Run joins the cluster (retrying while no other member answers) and
	// holds the membership until ctx ends; then it leaves.
	Run(ctx context.Context) error
}

// MembershipFactory starts a node's gossip member (it listens at once).
type MembershipFactory func(MemberInfo) (Membership, error)

// memberView is the member once it runs; until then nobody is dead. It is
// what leader loops get as LoopDeps.Members, before the key can be read.
type memberView struct{ m atomic.Pointer[Membership] }

func (v *memberView) DeadSince(node string) (time.Time, bool) {
	m := v.m.Load()
	if m == nil {
		return time.Time{}, false
	}
	return (*m).DeadSince(node)
}

// ControlNodes: none until the member runs.
func (v *memberView) ControlNodes() []ControlMember {
	m := v.m.Load()
	if m == nil {
		return nil
	}
	return (*m).ControlNodes()
}

// ApplyKeys: an error until the member runs.
func (v *memberView) ApplyKeys(keys [][]byte) error {
	m := v.m.Load()
	if m == nil {
		return errMemberNotRunning
	}
	return (*m).ApplyKeys(keys)
}

// KeyHolders: nobody until the member runs.
func (v *memberView) KeyHolders() (holders, primaries map[string]int, members int) {
	m := v.m.Load()
	if m == nil {
		return nil, nil, 0
	}
	return (*m).KeyHolders()
}

// errMemberNotRunning: this node's gossip member has not started yet.
var errMemberNotRunning = errors.New("this node's gossip member is not running yet")

// runMembership reads the gossip key, starts the member and holds it until
// ctx ends.
func runMembership(ctx context.Context, f MembershipFactory, v *memberView, info MemberInfo, key func(context.Context) ([]byte, error)) error {
	err := retry(ctx, 365*24*time.Hour, func(ctx context.Context) error {
		k, err := key(ctx)
		if err == nil && len(k) == 0 {
			err = fmt.Errorf("the cluster has no gossip key")
		}
		info.Key = k
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("gossip key: %w", err)
	}
	m, err := f(info)
	if err != nil {
		return err
	}
	v.m.Store(&m)
	return m.Run(ctx)
}

// workerGossipKey reads the key the join answer gave this worker.
func workerGossipKey(dataDir string) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		p := filepath.Join(dataDir, PKIDir, GossipKeyFile)
		k, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("gossip key of this worker: %w", err)
		}
		return k, nil
	}
}
