package runtime_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiffhq/skiff/agent/runtime"
	"github.com/skiffhq/skiff/agent/runtime/runtimetest"
	"github.com/skiffhq/skiff/integration/testutil"
)

// Two agents on one machine, each with its own data dir (state, CNI state,
// pod network namespaces): when one restarts and sweeps its leftovers, the
// other's running pod keeps its network namespace and keeps running.
// (Pod network namespaces used to live in one machine-wide directory, and a
// restarted agent removed the other agent's pod networks as leftovers.)
func TestRestartSweepsOnlyItsOwnPodNetworks(t *testing.T) {
	t.Parallel()
	a, b := runtimetest.NewEnv(t), runtimetest.NewEnv(t)
	if a.NetCfg.NetnsDir == b.NetCfg.NetnsDir {
		t.Fatalf("both agents keep pod network namespaces in %s", a.NetCfg.NetnsDir)
	}
	img := a.Registry.BusyboxImage(t, "busybox", nil)
	sleeper := func(uid string) *runtime.Pod {
		return &runtime.Pod{UID: uid, Name: uid, Containers: []runtime.Container{{Name: "app", Image: img, Command: []string{"sleep", "3600"}}}}
	}
	run(t, a, sleeper("of-a"))
	run(t, b, sleeper("orphan-of-b"))
	testutil.WaitFor(t, 20*time.Second, "both pods running", func() bool {
		return running(t, a, "of-a", "app") && running(t, b, "orphan-of-b", "app")
	})
	aNetns := filepath.Join(a.NetCfg.NetnsDir, "of-a")
	before := netnsInode(t, aNetns)

	// B restarts after its pod's record went (as after a crash): that pod
	// is B's leftover.
	if err := b.Runtime.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(b.RtCfg.StateDir, "pods", "orphan-of-b", "pod.json")); err != nil {
		t.Fatal(err)
	}
	b.Reopen(t)
	if l := b.Leftovers(); len(l) > 0 {
		t.Fatalf("B's leftovers after its restart: %v", l)
	}
	if after := netnsInode(t, aNetns); after != before {
		t.Fatalf("A's pod network namespace changed across B's restart (inode %d -> %d)", before, after)
	}
	if !running(t, a, "of-a", "app") {
		t.Fatal("A's pod stopped when B restarted")
	}
}

// netnsInode is the namespace pinned at path (fails unless it is one).
func netnsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		t.Fatalf("pod network namespace %s: %v", path, err)
	}
	if fs.Type != unix.NSFS_MAGIC {
		t.Fatalf("%s is no longer a pinned namespace (fs type %#x)", path, fs.Type)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
