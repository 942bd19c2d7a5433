package volume

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// writeFiles writes each key as a file of dir with mode.
func writeFiles(dir string, files map[string][]byte, mode int32) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	perm := os.FileMode(mode) & 0o777
	for k, data := range files {
		p := filepath.Join(dir, k)
		if err := os.WriteFile(p, data, perm); err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
		if err := os.Chmod(p, perm); err != nil { // WriteFile's mode is masked by the umask
			return fmt.Errorf("key %q: %w", k, err)
		}
	}
	return nil
}

// mountTmpfsOnce mounts a tmpfs on dir unless one is there (a re-attached
// pod prepares its volumes again).
func mountTmpfsOnce(dir, opt string) error {
	if mounted, _ := isMountPoint(dir); mounted {
		return nil
	}
	return unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opt)
}

// unmountIfMounted detaches dir's mount, if any.
func unmountIfMounted(dir string) error {
	mounted, err := isMountPoint(dir)
	if err != nil || !mounted {
		return err
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && err != unix.EINVAL {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}

func isMountPoint(path string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMount(fields[4]) == path {
			return true, nil
		}
	}
	return false, sc.Err()
}

// unescapeMount undoes mountinfo's escapes.
func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}
