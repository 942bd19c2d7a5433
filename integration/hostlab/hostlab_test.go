package hostlab_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/integration/hostlab"
)

// Two hosts reach each other over the lab bridge and nothing else: each has
// its own hostname, /var/lib and PID namespace, no default route; a
// partition cuts them apart and heals; closing the lab leaves nothing.
func TestHostsAreSeparateMachinesOnOneBridge(t *testing.T) {
	if err := hostlab.Check(); err != nil {
		t.Skip(err)
	}
	l, err := hostlab.New(hostlab.Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			l.Close()
		}
	})
	a, err := l.AddHost("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.AddHost("b")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := l.Exec(a, "hostname"); err != nil || strings.TrimSpace(out) != "a" {
		t.Fatalf("hostname in a: %q %v", out, err)
	}
	if out, err := l.Exec(a, "sh", "-c", "echo $$"); err != nil || strings.TrimSpace(out) == "" {
		t.Fatalf("pid in a: %q %v", out, err)
	}
	if out, _ := l.Exec(a, "ip", "route", "show", "default"); strings.TrimSpace(out) != "" {
		t.Fatalf("host a has a default route: %s", out)
	}
	if _, err := l.Exec(a, "touch", "/var/lib/only-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Exec(b, "test", "-e", "/var/lib/only-a"); err == nil {
		t.Fatal("b sees a's /var/lib")
	}
	ping := func(from, to *hostlab.Host) error {
		_, err := l.Exec(from, "busybox", "ping", "-c", "1", "-W", "1", to.IP.String())
		return err
	}
	if err := ping(a, b); err != nil {
		t.Fatalf("a cannot reach b: %v", err)
	}
	if err := ping(a, l.Admin); err != nil {
		t.Fatalf("a cannot reach the admin host: %v", err)
	}
	if err := l.Partition(a, b); err != nil {
		t.Fatal(err)
	}
	if err := ping(a, b); err == nil {
		t.Fatal("a reaches b across a partition")
	}
	if err := ping(a, l.Admin); err != nil {
		t.Fatalf("the partition of a and b cut a from the admin host: %v", err)
	}
	if err := l.Heal(a, b); err != nil {
		t.Fatal(err)
	}
	if err := ping(b, a); err != nil {
		t.Fatalf("b cannot reach a after heal: %v", err)
	}
	p, err := l.Start(a, "sleeper", "sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	p.Kill()
	if !p.Exited() {
		t.Fatal("sleeper survived kill")
	}
	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Start(b, "bg", "sh", "-c", "sleep 600 & sleep 600"); err != nil {
		t.Fatal(err)
	}
	closed = true
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if left := l.Leftovers(); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
}

// A lab removes what a run killed before its Close left (its directory and
// empty cgroups, named with that run's PID) and nothing of a live run.
func TestNewSweepsWhatAKilledRunLeft(t *testing.T) {
	if err := hostlab.Check(); err != nil {
		t.Skip(err)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadID := fmt.Sprintf("%d-sweep%d", dead.Process.Pid, os.Getpid())
	liveID := fmt.Sprintf("%d-sweep%d", os.Getpid(), os.Getpid())
	deadDir := filepath.Join(os.TempDir(), "skiff-hostlab-"+deadID)
	liveDir := filepath.Join(os.TempDir(), "skiff-hostlab-"+liveID)
	deadCgroup := "/sys/fs/cgroup/pids/skiff-lab-" + deadID
	liveCgroup := "/sys/fs/cgroup/pids/skiff-lab-" + liveID
	t.Cleanup(func() {
		os.RemoveAll(deadDir)
		os.RemoveAll(liveDir)
		os.Remove(deadCgroup + "/w1-agent")
		os.Remove(deadCgroup)
		os.Remove(liveCgroup)
	})
	for _, d := range []string{filepath.Join(deadDir, "w1", "var", "lib"), liveDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cgroups := false
	if err := os.MkdirAll(deadCgroup+"/w1-agent", 0o755); err == nil {
		cgroups = true
		if err := os.Mkdir(liveCgroup, 0o755); err != nil {
			t.Fatal(err)
		}
	} else {
		t.Logf("no pids cgroup hierarchy here (%v): checking directories only", err)
	}
	l, err := hostlab.New(hostlab.Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(deadDir); !os.IsNotExist(err) {
		t.Errorf("the dead run's directory %s is still there (%v)", deadDir, err)
	}
	if _, err := os.Stat(liveDir); err != nil {
		t.Errorf("the live run's directory %s was removed: %v", liveDir, err)
	}
	if cgroups {
		if _, err := os.Stat(deadCgroup); !os.IsNotExist(err) {
			t.Errorf("the dead run's cgroup %s is still there (%v)", deadCgroup, err)
		}
		if _, err := os.Stat(liveCgroup); err != nil {
			t.Errorf("the live run's cgroup %s was removed: %v", liveCgroup, err)
		}
	}
}
