package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// subPath and subPathExpr mount one file or directory inside a volume
// instead of the whole volume. The path is a container's input, and the
// volume's content may be written by any container of the pod, so it is
// resolved as kubelet does: the path is relative with no ".." element
// (checked up front, naming the field), every symlink in it is resolved
// with the volume as root (openat2 RESOLVE_IN_ROOT through
// filepath-securejoin), a missing path is created as a directory, and the
// object reached is bind-mounted by its open handle onto a per-container
// mount point under the pod's directory, which the container then mounts.
// Nothing between the check and the mount can swap in a path outside the
// volume. The mount points go with the pod (teardownSandbox unmounts
// everything under the pod directory).

// ErrSubPath wraps every refused subPath.
var ErrSubPath = errors.New("invalid subPath")

// checkSubPath: relative, and no ".." element (kubelet refuses both).
func checkSubPath(field, sub string) error {
	if filepath.IsAbs(sub) {
		return fmt.Errorf("%w: %s %q: must be a relative path", ErrSubPath, field, sub)
	}
	for _, el := range strings.Split(sub, "/") {
		if el == ".." {
			return fmt.Errorf("%w: %s %q: must not contain '..'", ErrSubPath, field, sub)
		}
	}
	return nil
}

var envRef = regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)`)

// expandEnvRefs expands $(VAR) from env ("K=V" entries) as Kubernetes
// does: $$ is a literal $, an unknown $(VAR) stays as written.
func expandEnvRefs(s string, env []string) string {
	vals := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vals[k] = v
	}
	return envRef.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		if v, ok := vals[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

// subPathOf is m's path inside its volume ("" for the whole volume), with
// subPathExpr expanded from the container's final environment.
func subPathOf(field string, m VolumeMount, env []string) (string, error) {
	if m.SubPathExpr != "" {
		sub := expandEnvRefs(m.SubPathExpr, env)
		return sub, checkSubPath(field+".subPathExpr", sub)
	}
	return m.SubPath, checkSubPath(field+".subPath", m.SubPath)
}

// subPathSource resolves sub inside volRoot and returns a mount point
// (under the pod directory) holding exactly that file or directory.
func (p *podRT) subPathSource(c *ctrRT, idx int, field, volRoot, sub string) (string, error) {
	root, err := os.OpenFile(volRoot, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("%s: volume root: %w", field, err)
	}
	defer root.Close()
	h, err := pathrs.OpenatInRoot(root, sub)
	if errors.Is(err, os.ErrNotExist) {
		h, err = pathrs.MkdirAllHandle(root, sub, 0o755)
	}
	if err != nil {
		return "", fmt.Errorf("%w: %s %q: %w", ErrSubPath, field, sub, err)
	}
	defer h.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(h.Fd()), &st); err != nil {
		return "", fmt.Errorf("%s %q: %w", field, sub, err)
	}
	target := filepath.Join(p.rt.podDir(p.rec.Pod.UID), "volume-subpaths", c.spec.Name, strconv.Itoa(idx))
	// A restarted container mounts afresh: the path may now be another object.
	_ = unix.Unmount(target, unix.MNT_DETACH)
	_ = os.Remove(target)
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		return "", err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		err = os.Mkdir(target, 0o755)
	} else {
		var f *os.File
		if f, err = os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err == nil {
			f.Close()
		}
	}
	if err != nil {
		return "", fmt.Errorf("%s: mount point: %w", field, err)
	}
	// The handle's magic link is the object itself, not a path to re-walk.
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", h.Fd()), target, "", unix.MS_BIND, ""); err != nil {
		return "", fmt.Errorf("%s %q: bind mount: %w", field, sub, err)
	}
	return target, nil
}
