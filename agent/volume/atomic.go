package volume

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Files of ConfigMap, Secret and downwardAPI volumes are written the way
// kubelet's AtomicWriter does, so a running pod sees an update all at once:
// the files go into a fresh hidden directory "..<timestamp>", the symlink
// "..data" is switched to it with one rename, and every key is a symlink
// "key" → "..data/key". A reader sees either the old set or the new one,
// never a mix; the old directory is removed afterwards.

const dataLink = "..data"

// Updatable sources are rewritten in running pods when what they show
// changes (the ConfigMap, the Secret, the pod's labels). Update gets the
// volume's dir as Prepare did, and is called on the new source.
type Updatable interface {
	Source
	Update(dir string) error
}

// atomicWriteFiles makes dir show exactly files, with mode.
func atomicWriteFiles(dir string, files map[string][]byte, mode int32) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	perm := os.FileMode(mode) & 0o777
	ts, err := os.MkdirTemp(dir, ".."+time.Now().UTC().Format("2006_01_02_15_04_05."))
	if err != nil {
		return err
	}
	if err := os.Chmod(ts, 0o755); err != nil {
		return err
	}
	for k, data := range files {
		p := filepath.Join(ts, k)
		if err := os.WriteFile(p, data, perm); err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
		if err := os.Chmod(p, perm); err != nil { // WriteFile's mode is masked by the umask
			return fmt.Errorf("key %q: %w", k, err)
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, dataLink))
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, dataLink)); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, "..") {
			continue
		}
		if _, keep := files[name]; !keep {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("stale key %q: %w", name, err)
			}
		}
	}
	for k := range files {
		link := filepath.Join(dir, k)
		if target, err := os.Readlink(link); err == nil && target == filepath.Join(dataLink, k) {
			continue
		}
		_ = os.Remove(link) // a plain file from an older layout
		if err := os.Symlink(filepath.Join(dataLink, k), link); err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
	}
	if old != "" && old != filepath.Base(ts) && strings.HasPrefix(old, "..") && !strings.Contains(old, "/") {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			return fmt.Errorf("old data: %w", err)
		}
	}
	return nil
}

// Update implements Updatable.
func (c *ConfigMap) Update(dir string) error { return c.Prepare(dir) }

// Update implements Updatable: the tmpfs is there; only the files change.
func (s *Secret) Update(dir string) error { return s.Prepare(dir) }
