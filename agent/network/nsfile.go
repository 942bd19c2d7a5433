package network

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// CreateNamespaceFile creates a new namespace of the kind given by cloneFlag
// (unix.CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS) and keeps it alive by
// bind-mounting it on path, so containers can join it by path and it
// survives the agent's restart. prepare, if not nil, runs inside the new
// namespace before it is pinned (for example to set the hostname of a UTS
// namespace).
//
// The work happens on a dedicated, locked OS thread that is never unlocked:
// Go then throws the thread away when the goroutine ends, so the changed
// namespace never leaks into other goroutines.
func CreateNamespaceFile(path string, cloneFlag int, prepare func() error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("namespace dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("namespace file %s: %w", path, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(cloneFlag); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		if prepare != nil {
			if err := prepare(); err != nil {
				errc <- err
				return
			}
		}
		kind := map[int]string{unix.CLONE_NEWNET: "net", unix.CLONE_NEWIPC: "ipc", unix.CLONE_NEWUTS: "uts"}[cloneFlag]
		if kind == "" {
			errc <- fmt.Errorf("unsupported namespace flag %#x", cloneFlag)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/%s", unix.Gettid(), kind)
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind mount %s: %w", src, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return fmt.Errorf("create namespace %s: %w", path, err)
	}
	return nil
}

// DeleteNamespaceFile unpins and removes a namespace file made by
// CreateNamespaceFile. A missing file is not an error.
func DeleteNamespaceFile(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove namespace %s: %w", path, err)
	}
	return nil
}
