package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// decompress recognises gzip and zstd by their magic bytes; anything else is
// taken as an uncompressed tar.
func decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzip.NewReader(br)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		d, err := zstd.NewReader(br)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}

// unpack extracts a layer tar into dir so that dir can serve as an overlayfs
// lower layer: ".wh.<name>" becomes a 0/0 character device (overlay's
// whiteout) and ".wh..wh..opq" marks its directory opaque with the
// trusted.overlay.opaque xattr. Paths are resolved inside dir (symlinks in
// the layer cannot point writes outside it).
func unpack(ctx context.Context, r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	type dirTimes struct {
		path  string
		mtime time.Time
	}
	var dirs []dirTimes
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("tar: %w", err)
		}
		name := filepath.Clean("/" + hdr.Name)
		if name == "/" {
			continue
		}
		parent, base := filepath.Split(name)
		parentPath, err := securejoin.SecureJoin(dir, parent)
		if err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		if err := os.MkdirAll(parentPath, 0o755); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		if base == whiteoutOpaque {
			if err := unix.Setxattr(parentPath, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
				return fmt.Errorf("opaque whiteout %q: %w", hdr.Name, err)
			}
			continue
		}
		if strings.HasPrefix(base, whiteoutPrefix) {
			target := filepath.Join(parentPath, strings.TrimPrefix(base, whiteoutPrefix))
			_ = os.RemoveAll(target)
			if err := unix.Mknod(target, unix.S_IFCHR, 0); err != nil {
				return fmt.Errorf("whiteout %q: %w", hdr.Name, err)
			}
			continue
		}
		path := filepath.Join(parentPath, base)
		if fi, err := os.Lstat(path); err == nil && !(fi.IsDir() && hdr.Typeflag == tar.TypeDir) {
			_ = os.RemoveAll(path)
		}
		mode := uint32(hdr.Mode & 0o7777)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(path, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("entry %q: %w", hdr.Name, err)
			}
			dirs = append(dirs, dirTimes{path, hdr.ModTime})
		case tar.TypeReg:
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return fmt.Errorf("entry %q: %w", hdr.Name, err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("entry %q: %w", hdr.Name, err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(hdr.Linkname, path); err != nil {
				return fmt.Errorf("entry %q: %w", hdr.Name, err)
			}
		case tar.TypeLink:
			target, err := securejoin.SecureJoin(dir, filepath.Clean("/"+hdr.Linkname))
			if err != nil {
				return fmt.Errorf("hardlink %q: %w", hdr.Name, err)
			}
			if err := os.Link(target, path); err != nil {
				return fmt.Errorf("hardlink %q -> %q: %w", hdr.Name, hdr.Linkname, err)
			}
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
			dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
			if err := unix.Mknod(path, kind|mode, int(dev)); err != nil {
				return fmt.Errorf("entry %q: %w", hdr.Name, err)
			}
		default:
			continue // pax/global headers, unknown types: nothing on disk
		}
		if err := os.Lchown(path, hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("chown %q: %w", hdr.Name, err)
		}
		for k, v := range hdr.PAXRecords {
			if xk, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				// Best effort: some xattrs (security.*) may be refused.
				_ = unix.Lsetxattr(path, xk, []byte(v), 0)
			}
		}
		if hdr.Typeflag != tar.TypeSymlink && hdr.Typeflag != tar.TypeLink {
			if err := os.Chmod(path, os.FileMode(mode&0o777)|modeBits(mode)); err != nil {
				return fmt.Errorf("chmod %q: %w", hdr.Name, err)
			}
		}
		if hdr.Typeflag != tar.TypeDir && hdr.Typeflag != tar.TypeLink {
			ts := []unix.Timespec{unix.NsecToTimespec(hdr.AccessTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
			if hdr.AccessTime.IsZero() {
				ts[0] = ts[1]
			}
			_ = unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW)
		}
	}
	// Directory mtimes last: creating entries inside changed them.
	for i := len(dirs) - 1; i >= 0; i-- {
		t := unix.NsecToTimespec(dirs[i].mtime.UnixNano())
		_ = unix.UtimesNanoAt(unix.AT_FDCWD, dirs[i].path, []unix.Timespec{t, t}, 0)
	}
	return nil
}

func modeBits(m uint32) os.FileMode {
	var fm os.FileMode
	if m&unix.S_ISUID != 0 {
		fm |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		fm |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		fm |= os.ModeSticky
	}
	return fm
}
