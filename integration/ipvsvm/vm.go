package ipvsvm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Modules loaded in the guest, in addition to their dependencies from
// modules.dep. crc32c_generic comes first: libcrc32c's soft dependency on
// it is not in modules.dep, and nf_conntrack needs libcrc32c.
var Modules = []string{"crc32c_generic", "nf_conntrack", "ip_vs", "ip_vs_rr", "dummy", "veth",
	"nf_tables", "nft_chain_nat", "nft_masq", "nft_fib_ipv4", "nft_reject_ipv4", "nft_numgen",
	"nft_ct", "nft_fib_inet"} // nft_ct, nft_fib_inet: netproxy/netpol's table

// ErrUnavailable means qemu or the Debian kernel package is not installed.
var ErrUnavailable = errors.New("qemu or Debian kernel not installed")

// Kernel finds the Debian kernel: version, bzImage path.
func Kernel() (kver, bzImage string, err error) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return "", "", fmt.Errorf("%w: qemu-system-x86_64 not in PATH (Debian package qemu-system-x86)", ErrUnavailable)
	}
	images, _ := filepath.Glob("/boot/vmlinuz-*-amd64")
	sort.Strings(images)
	for i := len(images) - 1; i >= 0; i-- {
		v := strings.TrimPrefix(filepath.Base(images[i]), "vmlinuz-")
		if _, err := os.Stat(filepath.Join("/lib/modules", v, "modules.dep")); err == nil {
			return v, images[i], nil
		}
	}
	return "", "", fmt.Errorf("%w: no /boot/vmlinuz-*-amd64 with /lib/modules/<version>/modules.dep (Debian package linux-image-amd64)", ErrUnavailable)
}

// Artifacts are a bootable kernel and initramfs.
type Artifacts struct {
	Vmlinux, Initramfs string
}

// Build writes, into dir: the ELF vmlinux extracted from the bzImage (qemu
// boots it via PVH and skips the slow in-guest decompression), the guest
// program built from guestPkg (a Go package path, CGO disabled so it is
// static) and an initramfs whose /init loads the modules and runs
// `/guest <args from skiff.args=>` then powers off.
func Build(ctx context.Context, dir, guestPkg string) (*Artifacts, error) {
	kver, bz, err := Kernel()
	if err != nil {
		return nil, err
	}
	a := &Artifacts{Vmlinux: filepath.Join(dir, "vmlinux"), Initramfs: filepath.Join(dir, "initramfs.cpio")}
	if err := extractVmlinux(ctx, bz, a.Vmlinux); err != nil {
		return nil, err
	}
	root := filepath.Join(dir, "root")
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "run", "lib/modules"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, err
		}
	}
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(root, "guest"), guestPkg)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build guest %s: %w\n%s", guestPkg, err, out)
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("%w: busybox not found (Debian package busybox-static)", ErrUnavailable)
	}
	if err := copyFile(busybox, filepath.Join(root, "bin/busybox"), 0o755); err != nil {
		return nil, err
	}
	order, err := moduleOrder(kver, Modules)
	if err != nil {
		return nil, err
	}
	var load []string
	for _, rel := range order {
		name := filepath.Base(rel)
		src := filepath.Join("/lib/modules", kver, rel)
		dst := filepath.Join(root, "lib/modules", strings.TrimSuffix(strings.TrimSuffix(name, ".xz"), ".zst"))
		if err := unpackModule(ctx, src, dst); err != nil {
			return nil, err
		}
		load = append(load, filepath.Base(dst))
	}
	init := "#!/bin/busybox sh\n/bin/busybox --install -s /bin\n" +
		"mount -t proc proc /proc\nmount -t sysfs sys /sys\nmount -t devtmpfs dev /dev 2>/dev/null\nmount -t tmpfs run /run\n" +
		"for m in " + strings.Join(load, " ") + "; do insmod /lib/modules/$m || echo \"GUEST insmod $m FAILED\"; done\n" +
		"ip link set lo up\n" +
		"args=$(sed -n 's/.*skiff.args=\\([^ ]*\\).*/\\1/p' /proc/cmdline | tr ',' ' ')\n" +
		"/guest $args\necho \"GUEST-EXIT $?\"\npoweroff -f\n"
	if err := os.WriteFile(filepath.Join(root, "init"), []byte(init), 0o755); err != nil {
		return nil, err
	}
	return a, cpioDir(ctx, root, a.Initramfs)
}

func extractVmlinux(ctx context.Context, bzImage, out string) error {
	raw, err := os.ReadFile(bzImage)
	if err != nil {
		return err
	}
	i := bytes.Index(raw, []byte("\xfd7zXZ\x00")) // Debian: CONFIG_KERNEL_XZ
	if i < 0 {
		return fmt.Errorf("%s: no xz payload found", bzImage)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, "xz", "-dc")
	cmd.Stdin = bytes.NewReader(raw[i:])
	cmd.Stdout = f
	_ = cmd.Run() // trailing bytes after the xz stream make xz exit non-zero; the output is complete
	head := make([]byte, 4)
	if _, err := f.ReadAt(head, 0); err != nil || string(head) != "\x7fELF" {
		return fmt.Errorf("extracting vmlinux from %s: result is not an ELF file", bzImage)
	}
	return nil
}

// moduleOrder resolves want (module names) to modules.dep paths with every
// dependency before its user.
func moduleOrder(kver string, want []string) ([]string, error) {
	f, err := os.Open(filepath.Join("/lib/modules", kver, "modules.dep"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	deps := map[string][]string{}
	byName := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
		base := filepath.Base(mod)
		base = regexp.MustCompile(`\.ko(\.xz|\.zst|\.gz)?$`).ReplaceAllString(base, "")
		byName[strings.ReplaceAll(base, "-", "_")] = mod
	}
	var order []string
	seen := map[string]bool{}
	var add func(string)
	add = func(mod string) {
		if seen[mod] {
			return
		}
		seen[mod] = true
		d := deps[mod] // listed user-first: load from the end
		for i := len(d) - 1; i >= 0; i-- {
			add(d[i])
		}
		order = append(order, mod)
	}
	for _, name := range want {
		mod, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("module %s not in /lib/modules/%s/modules.dep", name, kver)
		}
		add(mod)
	}
	return order, nil
}

// unpackModule copies a module, decompressing it: busybox insmod cannot
// load compressed modules.
func unpackModule(ctx context.Context, src, dst string) error {
	var tool string
	switch {
	case strings.HasSuffix(src, ".xz"):
		tool = "xz"
	case strings.HasSuffix(src, ".zst"):
		tool = "zstd"
	default:
		return copyFile(src, dst, 0o644)
	}
	out, err := exec.CommandContext(ctx, tool, "-dc", src).Output()
	if err != nil {
		return fmt.Errorf("decompress %s: %w", src, err)
	}
	return os.WriteFile(dst, out, 0o644)
}

func copyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, mode)
}

func cpioDir(ctx context.Context, root, out string) error {
	cmd := exec.CommandContext(ctx, "sh", "-c", "find . | cpio -o -H newc --quiet > "+out)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("cpio (Debian package cpio): %w: %s", err, b)
	}
	return nil
}

// Boot runs the guest with args (passed to /guest, no spaces inside one) and
// returns the console output. It stops qemu after timeout.
func Boot(ctx context.Context, a *Artifacts, args []string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-accel", "tcg,thread=single", "-cpu", "max", "-m", "1024", "-smp", "1",
		"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-display", "none",
		"-kernel", a.Vmlinux, "-initrd", a.Initramfs,
		"-append", "console=ttyS0 quiet panic=-1 skiff.args="+strings.Join(args, ","))
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("qemu did not finish within %s", timeout)
	}
	if err != nil {
		return string(out), fmt.Errorf("qemu: %w", err)
	}
	return string(out), nil
}
