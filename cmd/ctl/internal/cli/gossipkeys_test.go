package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/skiffhq/skiff/agent/gossip"
	"github.com/skiffhq/skiff/controlplane/node"
	"github.com/skiffhq/skiff/integration/testutil"
	"github.com/skiffhq/skiff/proto/client"
	joinv1 "github.com/skiffhq/skiff/proto/join/v1"
)

// ctl runs one ctl command in this process.
func ctl(args ...string) (string, error) {
	var out, errb bytes.Buffer
	err := Run(context.Background(), args, Streams{In: &bytes.Buffer{}, Out: &out, Err: &errb})
	if err != nil {
		return out.String(), errors.New(err.Error() + " " + errb.String())
	}
	return out.String(), nil
}

// `ctl gossip key` rotates the key of a running cluster (two control
// nodes and a `ctl join` worker; the calls go to c1, c2 follows the stored
// ring): install, use, remove the old; all stay members all along and end
// with only the new key (the worker also on disk), a process holding only the removed key is refused; the primary
// key cannot be removed; viewers and workers may not touch the ring, and
// only nodes may fetch the keys themselves.
func TestGossipKeyRotationWithCtl(t *testing.T) {
	gc := startGossipCluster(t, true)
	c, w, c2 := gc.get("c1"), gc.get("w1"), gc.get("c2")
	all := []*member{c, w, c2}
	admin := filepath.Join(gc.ccfg.DataDir, node.AdminConfigFile)
	worker := filepath.Join(gc.wcfg.DataDir, node.NodeConfigFile)
	viewer := filepath.Join(t.TempDir(), "bob.conf")
	if _, err := ctl("--config", admin, "user", "create", "bob", "--role", "viewer", "-o", viewer); err != nil {
		t.Fatal(err)
	}
	oldKey, err := os.ReadFile(filepath.Join(gc.wcfg.DataDir, node.PKIDir, node.GossipKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	newKey := make([]byte, 32)
	if _, err := rand.Read(newKey); err != nil {
		t.Fatal(err)
	}
	newB64 := base64.StdEncoding.EncodeToString(newKey)
	oldB64 := base64.StdEncoding.EncodeToString(oldKey)
	oldFP, newFP := gossip.KeyFingerprint(oldKey), gossip.KeyFingerprint(newKey)

	for who, conf := range map[string]string{"viewer": viewer, "worker": worker} {
		for _, args := range [][]string{{"list"}, {"install", newB64}} {
			if _, err := ctl(append([]string{"--config", conf, "gossip", "key"}, args...)...); err == nil || !strings.Contains(err.Error(), "only admins") {
				t.Errorf("%s: gossip key %s: err %v, want refused (only admins)", who, args[0], err)
			}
		}
	}
	if _, err := ctl("--config", admin, "gossip", "key", "install", base64.StdEncoding.EncodeToString([]byte("short"))); err == nil || !strings.Contains(err.Error(), "5 bytes") {
		t.Errorf("install of a 5-byte key: err %v, want one naming the size", err)
	}

	// list: the key's fingerprint (never the key), held by both members.
	listed := func(want string) func() bool {
		return func() bool {
			out, err := ctl("--config", admin, "gossip", "key", "list")
			return err == nil && strings.Contains(out, want) && !strings.Contains(out, oldB64)
		}
	}
	testutil.WaitFor(t, 10*time.Second, "list: the old key primary at 3/3 members", listed(oldFP+"  *        3/3"))

	// The keys themselves go to nodes only (join service), never to users.
	if keys, err := gossipKeysAs(t, worker, gc.addr); err != nil || len(keys) != 1 || !bytes.Equal(keys[0], oldKey) {
		t.Errorf("GossipKeys as the worker: %d keys, %v", len(keys), err)
	}
	for who, conf := range map[string]string{"admin": admin, "viewer": viewer} {
		if _, err := gossipKeysAs(t, conf, gc.addr); err == nil || !strings.Contains(err.Error(), "only nodes") {
			t.Errorf("GossipKeys as %s: err %v, want refused", who, err)
		}
	}

	holds := func(fps string) func() bool {
		return func() bool {
			for _, m := range all {
				if x, ok := m.g.Member(m.g.Name()); !ok || x.Meta.Keys != fps {
					return false
				}
			}
			return true
		}
	}
	step := func(args ...string) {
		t.Helper()
		if out, err := ctl(append([]string{"--config", admin, "gossip", "key"}, args...)...); err != nil {
			t.Fatalf("gossip key %s: %v %s", args[0], err, out)
		}
	}
	step("install", newB64)
	testutil.WaitFor(t, 20*time.Second, "every member to hold both keys", holds(oldFP+","+newFP))
	testutil.WaitFor(t, 10*time.Second, "list: the new key at 3/3", listed(newFP+"           3/3"))
	step("use", newB64)
	testutil.WaitFor(t, 20*time.Second, "every member to encrypt with the new key", holds(newFP+","+oldFP))
	if _, err := ctl("--config", admin, "gossip", "key", "remove", newB64); err == nil || !strings.Contains(err.Error(), "primary key") {
		t.Errorf("removing the primary key: err %v, want refused naming the primary key", err)
	}
	// remove waits until c1 sees no member encrypting with the old key.
	testutil.WaitFor(t, 10*time.Second, "remove of the old key to be accepted", func() bool {
		_, err := ctl("--config", admin, "gossip", "key", "remove", oldB64)
		if err != nil && !strings.Contains(err.Error(), "still encrypt with") {
			t.Fatalf("gossip key remove: %v", err)
		}
		return err == nil
	})
	testutil.WaitFor(t, 20*time.Second, "every member to hold only the new key", holds(newFP))
	testutil.WaitFor(t, 10*time.Second, "list: only the new key, primary, at 3/3", func() bool {
		out, err := ctl("--config", admin, "gossip", "key", "list")
		return err == nil && strings.Contains(out, newFP+"  *        3/3") && !strings.Contains(out, oldFP)
	})
	for _, m := range all {
		for _, name := range []string{"c1", "w1", "c2"} {
			if x, _ := m.g.Member(name); x.State != gossip.StateAlive {
				t.Errorf("%s sees %s %s after the rotation", m.g.Name(), name, x.State)
			}
		}
	}
	// A restart of the worker starts from the ring it saved.
	testutil.WaitFor(t, 10*time.Second, "the worker to save the ring with only the new key", func() bool {
		saved, err := os.ReadFile(filepath.Join(gc.wcfg.DataDir, node.PKIDir, node.GossipKeyringFile))
		return err == nil && strings.Contains(string(saved), newB64) && !strings.Contains(string(saved), oldB64)
	})

	// Restarted, the worker starts its member with the saved ring's
	// primary key (its join answer held the old one) and is a member again.
	gc.restartWorker()
	testutil.WaitFor(t, 30*time.Second, "the restarted w1 alive at c1", func() bool {
		m := gc.get("w1")
		if m == nil {
			return false
		}
		x, _ := c.g.Member("w1")
		y, _ := m.g.Member("c1")
		return x.State == gossip.StateAlive && y.State == gossip.StateAlive
	})
	if k := gc.startKey("w1"); !bytes.Equal(k, newKey) {
		t.Errorf("the restarted worker started with key %s, want the new key %s", gossip.KeyFingerprint(k), newFP)
	}

	// Only the removed key: refused; the new key: a member.
	cAddr := net.JoinHostPort("127.0.0.61", itoa(gc.port))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	stale, err := gossip.Start(gossip.Config{Name: "stale", BindAddr: "127.0.0.63", Key: oldKey, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer stale.Shutdown()
	if _, err := stale.Join(cAddr); !errors.Is(err, gossip.ErrJoin) {
		t.Errorf("a member with only the removed key joined: %v", err)
	}
	fresh, err := gossip.Start(gossip.Config{Name: "fresh", BindAddr: "127.0.0.63", Key: newKey, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Shutdown()
	if _, err := fresh.Join(cAddr); err != nil {
		t.Errorf("a member with the new key: %v", err)
	}
	if x, ok := c.g.Member("stale"); ok && x.State == gossip.StateAlive {
		t.Error("c1 counts the member with the removed key as alive")
	}
}

// gossipKeysAs calls the join service's GossipKeys with the identity of a
// client config.
func gossipKeysAs(t *testing.T, conf, addr string) ([][]byte, error) {
	t.Helper()
	cc, err := client.LoadConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := cc.TLS()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := joinv1.NewJoinClient(conn).GossipKeys(ctx, &joinv1.GossipKeysRequest{})
	return resp.GetKeys(), err
}
