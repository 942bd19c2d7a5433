package runtimetest

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/vishvananda/netlink"

	"github.com/skiffhq/skiff/agent/image"
	"github.com/skiffhq/skiff/agent/network"
	"github.com/skiffhq/skiff/agent/runtime"
)

const labEnv = "SKIFF_RUNTIME_LAB_NETNS"

// Main runs the tests. As root it first re-executes the test binary in a
// fresh network namespace (only loopback, no route anywhere) and exits with
// its status; inside, it brings loopback up. Without root it runs the tests
// as they are (they skip, saying so).
func Main(m *testing.M) {
	if os.Geteuid() == 0 && os.Getenv(labEnv) == "" {
		cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
		cmd.Args[0] = os.Args[0]
		cmd.Env = append(os.Environ(), labEnv+"=1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Run(); err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				os.Exit(ee.ExitCode())
			}
			fmt.Fprintln(os.Stderr, "runtimetest: re-exec in lab netns:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv(labEnv) != "" {
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "runtimetest: lab loopback:", err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

// RequireRoot skips when the facilities are truly absent.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespaces, cgroups, overlayfs); CI runs as root")
	}
	for _, p := range []string{"/bin/busybox", "/usr/lib/cni/bridge"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s missing: run `make deps` (busybox-static, containernetworking-plugins)", p)
		}
	}
}

// Registry is an in-process OCI registry on loopback.
type Registry struct {
	Host string // 127.0.0.1:port
	srv  *httptest.Server
}

var (
	regOnce sync.Once
	reg     *Registry
	imgMu   sync.Mutex
	built   = map[string]string{}
)

// SharedRegistry starts (once per test binary) a registry holding the
// busybox image at Host/busybox:1.
func SharedRegistry(t testing.TB) *Registry {
	regOnce.Do(func() {
		srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
		reg = &Registry{Host: strings.TrimPrefix(srv.URL, "http://"), srv: srv}
	})
	return reg
}

// BusyboxImage pushes (once) an image with busybox and all its applets in
// /bin, an /etc/passwd, and extra files, and returns its reference.
func (r *Registry) BusyboxImage(t testing.TB, repo string, extra map[string]string) string {
	t.Helper()
	imgMu.Lock()
	defer imgMu.Unlock()
	ref := r.Host + "/" + repo + ":1"
	if _, ok := built[ref]; ok {
		return ref
	}
	layer, err := BusyboxLayer(extra)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{Cmd: []string{"/bin/sh"}, Env: []string{"PATH=/bin", "IMAGE_ENV=from-image"}, WorkingDir: "/"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Push(ref, img); err != nil {
		t.Fatal(err)
	}
	built[ref] = ref
	return ref
}

// Push writes img to ref on this registry.
func (r *Registry) Push(ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	return remote.Write(tag, img)
}

// TarLayer builds a gzip layer from a tar written by fill.
func TarLayer(fill func(tw *tar.Writer) error) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := fill(tw); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}

// BusyboxLayer is /bin/busybox with a symlink per applet, /etc/passwd,
// /tmp, and extra files (path → content).
func BusyboxLayer(extra map[string]string) (v1.Layer, error) {
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return nil, err
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	return TarLayer(func(tw *tar.Writer) error {
		mt := time.Unix(1700000000, 0)
		for _, d := range []string{"bin", "etc", "tmp", "www"} {
			mode := int64(0o755)
			if d == "tmp" {
				mode = 0o1777
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: mode, ModTime: mt}); err != nil {
				return err
			}
		}
		files := map[string]string{
			"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
			"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
		}
		for k, v := range extra {
			files[strings.TrimPrefix(k, "/")] = v
		}
		for n, c := range files {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: int64(len(c)), ModTime: mt}); err != nil {
				return err
			}
			if _, err := tw.Write([]byte(c)); err != nil {
				return err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb)), ModTime: mt}); err != nil {
			return err
		}
		if _, err := tw.Write(bb); err != nil {
			return err
		}
		for _, a := range strings.Fields(string(out)) {
			if a == "busybox" {
				continue
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: mt}); err != nil {
				return err
			}
		}
		return nil
	})
}

// Env is a complete runtime in temp dirs.
type Env struct {
	Dir       string
	Registry  *Registry
	Images    *image.Store
	Network   *network.Manager
	NetCfg    network.Config
	RtCfg     runtime.Config
	Runtime   *runtime.Runtime
	Cgroup    string
	BridgeIdx int
}

var (
	envMu  sync.Mutex
	envSeq int
)

// NewEnv builds an Env with fast back-off and registers a cleanup that
// removes every pod and then fails the test if anything is left: cgroups,
// mounts, namespaces, CNI allocations.
func NewEnv(t testing.TB) *Env {
	t.Helper()
	RequireRoot(t)
	envMu.Lock()
	envSeq++
	seq := envSeq
	envMu.Unlock()
	dir := t.TempDir()
	e := &Env{Dir: dir, Registry: SharedRegistry(t), BridgeIdx: seq}
	var err error
	e.Images, err = image.New(image.Config{Root: filepath.Join(dir, "images"), InsecureRegistries: []string{e.Registry.Host}})
	if err != nil {
		t.Fatal(err)
	}
	nc := network.DefaultConfig()
	nc.ConfDir = ""
	nc.CacheDir = filepath.Join(dir, "cni-cache")
	nc.IPAMDataDir = filepath.Join(dir, "cni-ipam")
	nc.NetnsDir = filepath.Join(dir, "netns")
	nc.PodCIDR = fmt.Sprintf("10.%d.%d.0/24", 200+os.Getpid()%50, seq%250)
	nc.BridgeName = fmt.Sprintf("skt%d-%d", os.Getpid()%100000, seq)
	nc.NetworkName = fmt.Sprintf("skifftest%d", seq)
	nc.IPMasq = false
	e.NetCfg = nc
	e.Network, err = network.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	e.Cgroup = fmt.Sprintf("/skiff-test-%d-%d", os.Getpid(), seq)
	rc := runtime.DefaultConfig()
	rc.StateDir = filepath.Join(dir, "state")
	rc.CgroupRoot = e.Cgroup
	rc.Images, rc.Network = e.Images, e.Network
	rc.BackoffBase, rc.BackoffMax = 200*time.Millisecond, 2*time.Second
	rc.LogMaxBytes = 64 << 10
	rc.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		rc.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	e.RtCfg = rc
	e.Runtime, err = runtime.New(context.Background(), rc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, st := range e.Runtime.ListPods() {
			if err := e.Runtime.RemovePod(ctx, st.UID); err != nil {
				t.Errorf("remove pod %s: %v", st.UID, err)
			}
		}
		if leaks := e.Leftovers(); len(leaks) > 0 {
			t.Errorf("leftovers after removing all pods:\n  %s", strings.Join(leaks, "\n  "))
		}
		e.ForceClean()
	})
	return e
}

// Reopen closes the Runtime (containers keep running) and opens a new one
// on the same state, as an agent restart does.
func (e *Env) Reopen(t testing.TB) {
	t.Helper()
	if err := e.Runtime.Close(); err != nil {
		t.Fatal(err)
	}
	rt, err := runtime.New(context.Background(), e.RtCfg)
	if err != nil {
		t.Fatal(err)
	}
	e.Runtime = rt
}

// Leftovers lists what pods left behind: cgroups under the env's root,
// mounts under its dir, pinned namespaces and CNI address allocations.
func (e *Env) Leftovers() []string {
	var out []string
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && strings.HasPrefix(f[4], e.Dir) {
			out = append(out, "mount "+f[4])
		}
		if len(f) > 4 && strings.Contains(l, " - cgroup") {
			_ = filepath.WalkDir(filepath.Join(f[4], e.Cgroup, "pods"), func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() && p != filepath.Join(f[4], e.Cgroup, "pods") {
					out = append(out, "cgroup "+p)
				}
				return nil
			})
		}
	}
	if ents, _ := os.ReadDir(e.NetCfg.NetnsDir); len(ents) > 0 {
		for _, en := range ents {
			out = append(out, "netns "+en.Name())
		}
	}
	ips, _ := e.Network.Allocations()
	for _, ip := range ips {
		out = append(out, "cni ip "+ip)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.RtCfg.StateDir, "libcontainer")); len(ents) > 0 {
		for _, en := range ents {
			out = append(out, "libcontainer "+en.Name())
		}
	}
	return out
}

// ForceClean removes the env's bridge and cgroup root (which pods do not own).
func (e *Env) ForceClean() {
	if l, err := netlink.LinkByName(e.NetCfg.BridgeName); err == nil {
		_ = netlink.LinkDel(l)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && strings.Contains(l, " - cgroup") {
			root := filepath.Join(f[4], e.Cgroup)
			var dirs []string
			_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			for i := len(dirs) - 1; i >= 0; i-- {
				_ = syscall.Rmdir(dirs[i])
			}
		}
	}
}
