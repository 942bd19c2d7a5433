package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/skiffhq/skiff/agent/network"
)

// cleanupLeftovers removes what belongs to no known pod: libcontainer
// containers, rootfs mounts, pinned namespaces (with CNI DEL, releasing
// their IPs), pod dirs without a readable record, and pod cgroups.
func (r *Runtime) cleanupLeftovers(ctx context.Context) error {
	r.mu.Lock()
	known := map[string]bool{}
	for uid := range r.pods {
		known[uid] = true
	}
	r.mu.Unlock()
	owner := func(id string) string { uid, _, _ := strings.Cut(id, "_"); return uid }
	var errs []error
	if ents, err := os.ReadDir(r.lcRoot()); err == nil {
		for _, e := range ents {
			if known[owner(e.Name())] {
				continue
			}
			r.log.Info("removing leftover container", "id", e.Name())
			if lc, err := libcontainer.Load(r.lcRoot(), e.Name()); err == nil {
				killAndWait(lc)
				if err := lc.Destroy(); err != nil {
					errs = append(errs, err)
				}
			} else {
				_ = os.RemoveAll(filepath.Join(r.lcRoot(), e.Name()))
			}
		}
	}
	if ids, err := r.cfg.Images.RootfsIDs(); err == nil {
		for _, id := range ids {
			if !known[owner(id)] {
				r.log.Info("removing leftover rootfs", "id", id)
				if err := r.cfg.Images.UnmountRootfs(id); err != nil {
					errs = append(errs, err)
				}
			}
		}
	} else {
		errs = append(errs, err)
	}
	if ids, err := r.cfg.Network.ListNetns(); err == nil {
		for _, uid := range ids {
			if known[uid] {
				continue
			}
			r.log.Info("removing leftover pod network", "uid", uid)
			if err := r.cfg.Network.Teardown(ctx, uid, "", nil); err != nil {
				errs = append(errs, err)
			}
			if err := r.cfg.Network.DeleteNetns(uid); err != nil {
				errs = append(errs, err)
			}
		}
	} else {
		errs = append(errs, err)
	}
	if ents, err := os.ReadDir(r.podsDir()); err == nil {
		for _, e := range ents {
			if known[e.Name()] {
				continue
			}
			dir := r.podDir(e.Name())
			for _, mp := range mountsUnder(dir) {
				if strings.HasPrefix(mp, filepath.Join(dir, "ns")+"/") {
					_ = network.DeleteNamespaceFile(mp)
				} else {
					_ = unix.Unmount(mp, unix.MNT_DETACH)
				}
			}
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, mnt := range cgroupMounts() {
		ents, err := os.ReadDir(filepath.Join(mnt, r.cfg.CgroupRoot, "pods"))
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() && !known[e.Name()] {
				if err := removeCgroupTree(r.podCgroup(e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// killAndWait SIGKILLs a loaded (not our child) container and waits for its
// init to be gone, so Destroy can remove it.
func killAndWait(lc *libcontainer.Container) {
	st, err := lc.State()
	if err != nil || st.InitProcessPid == 0 {
		return
	}
	ch, err := pidfdWaiter(st.InitProcessPid)
	_ = lc.Signal(unix.SIGKILL)
	if err != nil {
		return
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
	}
}
