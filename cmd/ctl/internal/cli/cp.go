package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skiffhq/skiff/proto/client"
	streamv1 "github.com/skiffhq/skiff/proto/stream/v1"
)

// cp is kubectl's: tar run in the container through exec (so the image
// needs tar, as with kubectl), the archive built or unpacked here.

// podPath is "[NAMESPACE/]POD:PATH".
type podPath struct{ ns, pod, path string }

func parseCpArg(s string) (podPath, bool) {
	i := strings.Index(s, ":")
	if i <= 0 || strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".") {
		return podPath{path: s}, false
	}
	ref, p := s[:i], s[i+1:]
	ns, pod, found := strings.Cut(ref, "/")
	if !found {
		ns, pod = "", ref
	}
	return podPath{ns: ns, pod: pod, path: p}, true
}

func (o *options) cpCmd() *cobra.Command {
	var container string
	cmd := &cobra.Command{
		Use:   "cp SRC DST",
		Short: "Copy files and directories to and from containers",
		Long: `Copy files and directories to and from a container, as kubectl cp does:
one side is [NAMESPACE/]POD:PATH. The container needs tar. Needs an
admin (it runs tar through exec, which is audited).`,
		Example: `  ctl cp ./config.yaml web-1:/etc/app/config.yaml
  ctl cp web-1:/var/log/app ./app-logs
  ctl cp -c sidecar shop/web-1:/tmp/dump.bin ./dump.bin`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, srcPod := parseCpArg(args[0])
			dst, dstPod := parseCpArg(args[1])
			ctx, stop := untilSignal(cmd.Context())
			defer stop()
			switch {
			case srcPod && !dstPod:
				return o.copyFromPod(ctx, container, src, dst.path)
			case dstPod && !srcPod:
				return o.copyToPod(ctx, container, src.path, dst)
			}
			return errors.New("one of SRC and DST must be POD:PATH and the other a local path")
		},
	}
	cmd.Flags().StringVarP(&container, "container", "c", "", "the container (default: the only or first one)")
	return cmd
}

// cpTarget resolves the pod and container of p.
func (o *options) cpTarget(ctx context.Context, c *client.Client, container string, p podPath) (*streamv1.PodRef, error) {
	ns := p.ns
	if ns == "" {
		ns = o.ns()
	}
	if p.path == "" {
		return nil, fmt.Errorf("%s: the path in the pod is empty (POD:PATH)", p.pod)
	}
	lookup, cancel := o.ctx(ctx)
	defer cancel()
	pod, err := o.onePod(lookup, c, ns, p.pod)
	if err != nil {
		return nil, err
	}
	if container == "" {
		container = defaultContainer(pod, o.streams.Err)
	}
	return &streamv1.PodRef{Namespace: pod.GetMetadata().GetNamespace(), Name: pod.GetMetadata().GetName(), Container: container}, nil
}

func (o *options) copyFromPod(ctx context.Context, container string, src podPath, dst string) error {
	c, err := o.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	ref, err := o.cpTarget(ctx, c, container, src)
	if err != nil {
		return err
	}
	clean := path.Clean(src.path)
	dir, base := path.Split(clean)
	if dir == "" {
		dir = "."
	}
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	untarErr := make(chan error, 1)
	go func() {
		err := untarInto(pr, base, dst)
		_ = pr.CloseWithError(err) // stops the exec's output if unpacking failed
		untarErr <- err
	}()
	code, err := execStream(ctx, c, ref, []string{"tar", "cf", "-", "-C", dir, base}, nil, pw, &stderr)
	_ = pw.Close()
	uerr := <-untarErr
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("tar in %s exited %d: %s", ref.GetName(), code, strings.TrimSpace(stderr.String()))
	}
	return uerr
}

func (o *options) copyToPod(ctx context.Context, container, src string, dst podPath) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	c, err := o.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	ref, err := o.cpTarget(ctx, c, container, dst)
	if err != nil {
		return err
	}
	clean := path.Clean(dst.path)
	dir, base := path.Split(clean)
	if dir == "" {
		dir = "."
	}
	pr, pw := io.Pipe()
	go func() { _ = pw.CloseWithError(tarFrom(pw, src, base)) }()
	var stderr bytes.Buffer
	code, err := execStream(ctx, c, ref, []string{"tar", "xmf", "-", "-C", dir}, pr, io.Discard, &stderr)
	_ = pr.Close()
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("tar in %s exited %d: %s", ref.GetName(), code, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// tarFrom writes src (a file or a directory tree) as an archive whose
// top entry is named name.
func tarFrom(w io.Writer, src, name string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = path.Join(name, filepath.ToSlash(rel))
		if info.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// untarInto unpacks an archive whose entries are base or under base/ into
// dst (base renamed to dst). An entry outside that, or one escaping dst
// through "..", is refused: the container chooses the archive's content.
func untarInto(r io.Reader, base, dst string) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("archive from the pod: %w", err)
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		var rel string
		switch {
		case name == base:
			rel = "."
		case strings.HasPrefix(name, base+"/"):
			rel = strings.TrimPrefix(name, base+"/")
		default:
			return fmt.Errorf("archive from the pod: entry %q is not under %q", hdr.Name, base)
		}
		if !filepath.IsLocal(filepath.FromSlash(rel)) && rel != "." {
			return fmt.Errorf("archive from the pod: entry %q leaves the destination", hdr.Name)
		}
		target := filepath.Join(dst, filepath.FromSlash(rel))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(target, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, fs.FileMode(hdr.Mode).Perm())
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
		default:
			// Links and devices are skipped, as kubectl skips them: a link
			// could point anywhere on this machine.
		}
	}
}

// execStream runs command in the container with stdin (nil: none) and
// returns its exit code.
func execStream(ctx context.Context, c *client.Client, ref *streamv1.PodRef, command []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.PodStreams().Exec(ctx)
	if err != nil {
		return -1, err
	}
	start := &streamv1.ExecStart{Pod: ref, Command: command, Stdin: stdin != nil}
	if err := stream.Send(&streamv1.ExecInput{Input: &streamv1.ExecInput_Start{Start: start}}); err != nil {
		return -1, callStatus(err, stream.Recv)
	}
	if stdin != nil {
		go copyStdin(stdin, stream.Send) // the only sender after start
	}
	for {
		out, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return -1, errors.New("the stream ended without the command's exit code")
		}
		if err != nil {
			return -1, err
		}
		switch {
		case out.GetStdout() != nil:
			if _, err := stdout.Write(out.GetStdout()); err != nil {
				return -1, err
			}
		case out.GetStderr() != nil:
			if _, err := stderr.Write(out.GetStderr()); err != nil {
				return -1, err
			}
		case out.GetExit() != nil:
			return int(out.GetExit().GetCode()), nil
		}
	}
}
