package netproxy

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
)

// openNetNS opens the namespace at path, or the caller's when path is empty.
func openNetNS(path string) (netns.NsHandle, error) {
	if path == "" {
		h, err := netns.Get()
		if err != nil {
			return netns.None(), fmt.Errorf("open current netns: %w", err)
		}
		return h, nil
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		return netns.None(), fmt.Errorf("open netns %q: %w", path, err)
	}
	return h, nil
}

// inNetNS runs f on an OS thread switched into ns. Files under /proc/sys/net
// and /proc/thread-self/net, and sockets created by f, belong to ns. The
// thread is returned to the runtime only if switching back worked.
func inNetNS(ns netns.NsHandle, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter netns: %w", err)
			runtime.UnlockOSThread()
			return
		}
		ferr := f()
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		} // else: the locked thread exits with this goroutine
		errc <- ferr
	}()
	return <-errc
}

// writeSysctl sets e.g. "net.ipv4.vs.conntrack" inside ns.
func writeSysctl(ns netns.NsHandle, name, value string) error {
	return inNetNS(ns, func() error {
		p := "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", name, value, err)
		}
		return nil
	})
}

// readNetFile reads /proc/thread-self/net/<name> as seen from ns (plain
// /proc/net follows the thread-group leader's namespace, not ours).
func readNetFile(ns netns.NsHandle, name string) ([]byte, error) {
	var b []byte
	err := inNetNS(ns, func() error {
		var err error
		b, err = os.ReadFile("/proc/thread-self/net/" + name)
		return err
	})
	return b, err
}
