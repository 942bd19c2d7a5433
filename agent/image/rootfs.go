package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNoLayers: an image without layers cannot be a rootfs.
var ErrNoLayers = errors.New("image has no layers")

// MountRootfs mounts a fresh overlayfs for container id over img's layers
// and returns its path. A previous mount of the same id is replaced (a
// restarted container starts from the image again, as in Kubernetes).
func (s *Store) MountRootfs(id string, img *Image) (string, error) {
	if len(img.Layers) == 0 {
		return "", fmt.Errorf("rootfs %s: %w", id, ErrNoLayers)
	}
	if err := s.UnmountRootfs(id); err != nil {
		return "", err
	}
	base := filepath.Join(s.containersDir(), id)
	upper, work, merged := filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "rootfs")
	for _, d := range []string{upper, work, merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", fmt.Errorf("rootfs %s: %w", id, err)
		}
	}
	lowers := make([]string, 0, len(img.Layers))
	for _, l := range slices.Backward(img.Layers) {
		p := s.layerPath(l)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("rootfs %s: layer %s missing: %w", id, l, err)
		}
		lowers = append(lowers, p)
	}
	// The kernel caps mount data at one page; long layer stacks need
	// shorter paths (not done yet: images here have few layers).
	data := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lowers, ":"), upper, work)
	if len(data) >= os.Getpagesize() {
		return "", fmt.Errorf("rootfs %s: %d layers make overlay options longer than a page", id, len(lowers))
	}
	if err := unix.Mount("overlay", merged, "overlay", 0, data); err != nil {
		return "", fmt.Errorf("rootfs %s: mount overlay: %w", id, err)
	}
	return merged, nil
}

// UnmountRootfs unmounts and deletes container id's rootfs (missing is fine).
func (s *Store) UnmountRootfs(id string) error {
	base := filepath.Join(s.containersDir(), id)
	merged := filepath.Join(base, "rootfs")
	if err := unix.Unmount(merged, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("rootfs %s: unmount: %w", id, err)
	}
	if err := os.RemoveAll(base); err != nil {
		return fmt.Errorf("rootfs %s: %w", id, err)
	}
	return nil
}

// RootfsIDs lists the containers that have a rootfs dir (for leftover cleanup).
func (s *Store) RootfsIDs() ([]string, error) {
	ents, err := os.ReadDir(s.containersDir())
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	var ids []string
	for _, e := range ents {
		ids = append(ids, e.Name())
	}
	return ids, nil
}
