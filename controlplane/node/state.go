package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/skiffhq/skiff/controlplane/pki"
)

// Role is what a node is.
type Role string

// Node roles.
const (
	RoleControl Role = "control"
	RoleWorker  Role = "worker"
)

// Files and folders of a data dir.
const (
	StateFile       = "node.json"
	PKIDir          = "pki"
	RaftDir         = "raft"
	AuditDir        = "audit"
	AdminConfigFile = "admin.conf"
	NodeConfigFile  = "node.conf"
	GossipKeyFile   = "gossip.key"
	controlKeyPair  = "control"
	workerKeyPair   = "node"
)

// ErrNoState: the data dir holds no node yet.
var ErrNoState = errors.New("no node in data dir")

// State is node.json: who the node is. It is written once, when the node
// is created, and read on every start.
type State struct {
	Role Role   `json:"role"`
	Name string `json:"name"`
	// Advertise is the host (IP or DNS name) other machines reach this node at.
	Advertise   string `json:"advertise"`
	BindAddress string `json:"bindAddress"`
	APIPort     int    `json:"apiPort,omitempty"`
	RaftPort    int    `json:"raftPort,omitempty"`
	// CreatedBy is "init" or "join".
	CreatedBy string    `json:"createdBy"`
	CreatedAt time.Time `json:"createdAt"`
	// Bootstrapped is set once `ctl init` formed the cluster; a node with it
	// set never bootstraps again, even if its raft/ folder is gone.
	Bootstrapped bool `json:"bootstrapped,omitempty"`
	// Servers are API addresses of control nodes (workers).
	Servers []string `json:"servers,omitempty"`
	// JoinMembers are the store members when this control node joined: the
	// only peers its store port accepts before the leader's first contact
	// brings it a Raft configuration (consensus.Config.JoinMembers).
	JoinMembers []string `json:"joinMembers,omitempty"`
}

// APIAddress is the advertised host:port of the API (control nodes).
func (s State) APIAddress() string { return hostPort(s.Advertise, s.APIPort) }

// RaftAddress is the advertised host:port of the store port.
func (s State) RaftAddress() string { return hostPort(s.Advertise, s.RaftPort) }

func (s State) apiBind() string  { return hostPort(s.BindAddress, s.APIPort) }
func (s State) raftBind() string { return hostPort(s.BindAddress, s.RaftPort) }

func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// LoadState reads dataDir/node.json; ErrNoState when there is none.
func LoadState(dataDir string) (State, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, fmt.Errorf("%w: %s has no %s", ErrNoState, dataDir, StateFile)
	}
	if err != nil {
		return State{}, fmt.Errorf("read node state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("%s: %w", filepath.Join(dataDir, StateFile), err)
	}
	if s.Role != RoleControl && s.Role != RoleWorker {
		return State{}, fmt.Errorf("%s: role %q is not %q or %q", filepath.Join(dataDir, StateFile), s.Role, RoleControl, RoleWorker)
	}
	return s, nil
}

func saveState(dataDir string, s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	return pki.WriteFileAtomic(filepath.Join(dataDir, StateFile), append(b, '\n'), 0o600)
}

// checkFresh refuses to create a node where one (or its leftovers) exists.
func checkFresh(dataDir string) error {
	for _, name := range []string{RaftDir, filepath.Join(PKIDir, controlKeyPair+".crt"), filepath.Join(PKIDir, workerKeyPair+".crt")} {
		if _, err := os.Stat(filepath.Join(dataDir, name)); err == nil {
			return fmt.Errorf("%s holds %s but no %s: it is left from an interrupted or foreign setup; "+
				"move it away or use an empty --data-dir", dataDir, name, StateFile)
		}
	}
	return nil
}
