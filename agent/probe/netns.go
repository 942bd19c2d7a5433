package probe

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netns"
)

// insecureTLS: kubelet does not verify probe certificates either.
func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} } //nolint:gosec // probe semantics

// NetnsDialer returns a dial function whose sockets are created inside the
// network namespace pinned at path. A socket belongs to the namespace it was
// created in, so only the socket() call needs the namespace switch; the
// connect and all I/O then run on any thread.
func NetnsDialer(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			orig, err := netns.Get()
			if err != nil {
				ch <- result{err: fmt.Errorf("probe: current netns: %w", err)}
				runtime.UnlockOSThread()
				return
			}
			defer orig.Close()
			target, err := netns.GetFromPath(path)
			if err != nil {
				ch <- result{err: fmt.Errorf("probe: netns %s: %w", path, err)}
				runtime.UnlockOSThread()
				return
			}
			defer target.Close()
			if err := netns.Set(target); err != nil {
				ch <- result{err: fmt.Errorf("probe: enter netns %s: %w", path, err)}
				runtime.UnlockOSThread()
				return
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err := netns.Set(orig); err != nil {
				// Leave the thread locked: Go discards it when this goroutine
				// ends, so no other goroutine runs in the pod's namespace.
				ch <- result{c, err}
				return
			}
			runtime.UnlockOSThread()
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}
