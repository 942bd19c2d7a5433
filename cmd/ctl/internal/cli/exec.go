package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/containerd/console"
	"github.com/spf13/cobra"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	streamv1 "github.com/skiffhq/skiff/proto/stream/v1"
)

// ExitError carries the exit code of a command run in a container: ctl
// exits with it (kubectl's "command terminated with exit code N").
type ExitError struct{ Code int }

func (e *ExitError) Error() string {
	return fmt.Sprintf("command terminated with exit code %d", e.Code)
}

type execFlags struct {
	stdin, tty bool
	container  string
}

func (o *options) execCmd() *cobra.Command {
	var f execFlags
	cmd := &cobra.Command{
		Use:   "exec (POD | TYPE/NAME) [-c CONTAINER] [-i] [-t] -- COMMAND [args...]",
		Short: "Run a command in a container",
		Long: `Run a command in a running container, as kubectl exec does: -i passes
stdin, -t allocates a terminal (when stdin is one). ctl exits with the
command's exit code. Needs an admin; each exec is in the audit log.`,
		Example: `  ctl exec web-1 -- ls /
  ctl exec -it web-1 -c app -- sh
  ctl exec deploy/web -- cat /etc/hostname`,
		RunE: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if dash != 1 || len(args) < 2 {
				return errors.New("give the pod, then -- and the command (e.g. ctl exec web-1 -- ls /)")
			}
			ctx, stop := untilSignal(cmd.Context())
			defer stop()
			return o.execLike(ctx, f, args[0], args[1:])
		},
		ValidArgsFunction: o.completeNames("Pod"),
	}
	fl := cmd.Flags()
	fl.BoolVarP(&f.stdin, "stdin", "i", false, "pass stdin to the command")
	fl.BoolVarP(&f.tty, "tty", "t", false, "stdin is a terminal: allocate one for the command")
	fl.StringVarP(&f.container, "container", "c", "", "the container (default: the only or first one)")
	return cmd
}

func (o *options) attachCmd() *cobra.Command {
	var f execFlags
	cmd := &cobra.Command{
		Use:   "attach (POD | TYPE/NAME) [-c CONTAINER] [-i] [-t]",
		Short: "Attach to a running container",
		Long: `Attach to the main process of a running container, as kubectl attach
does: its output from now on; with -i its stdin too (the container must
have stdin: true), and with -t its terminal (tty: true; the local one is
put in raw mode and its size follows the local window). Attach ends when
the process exits (ctl exits with its exit code), when ctl's stdin ends
(unless the container has stdinOnce, whose stdin then closes), or when ctl
is interrupted. Needs an admin; each attach is in the audit log.`,
		Example: `  ctl attach web-1
  ctl attach -it shell-1
  ctl attach deploy/web -c app`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := untilSignal(cmd.Context())
			defer stop()
			return o.execLike(ctx, f, args[0], nil)
		},
		ValidArgsFunction: o.completeNames("Pod"),
	}
	fl := cmd.Flags()
	fl.BoolVarP(&f.stdin, "stdin", "i", false, "pass stdin to the container (it must have stdin: true)")
	fl.BoolVarP(&f.tty, "tty", "t", false, "stdin is a terminal (the container must have tty: true)")
	fl.StringVarP(&f.container, "container", "c", "", "the container (default: the only or first one)")
	return cmd
}

// execLike runs exec (command given) or attach (none).
func (o *options) execLike(ctx context.Context, f execFlags, podArg string, command []string) error {
	c, err := o.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	lookup, cancel := o.ctx(ctx)
	pod, err := o.onePod(lookup, c, o.ns(), podArg)
	cancel()
	if err != nil {
		return err
	}
	if f.container == "" {
		f.container = defaultContainer(pod, o.streams.Err)
	}
	return o.streamTo(ctx, c, pod, f, command)
}

// streamTo runs command in a container of pod (exec), or attaches to its
// main process (attach, command nil).
func (o *options) streamTo(ctx context.Context, c *client.Client, pod *apiv1.Pod, f execFlags, command []string) error {
	ctr := f.container
	start := &streamv1.ExecStart{Pod: &streamv1.PodRef{Namespace: pod.GetMetadata().GetNamespace(), Name: pod.GetMetadata().GetName(), Container: ctr},
		Command: command, Stdin: f.stdin}
	if command == nil && f.tty {
		// As kubectl: a terminal only if the container has one.
		for _, cs := range pod.GetSpec().GetContainers() {
			if cs.GetName() == ctr && !cs.GetTty() {
				fmt.Fprintf(o.streams.Err, "Unable to use a TTY - container %s did not allocate one\n", ctr)
				f.tty = false
			}
		}
	}
	var term console.Console
	if f.tty {
		if file, ok := o.streams.In.(*os.File); ok && f.stdin {
			if cons, err := console.ConsoleFromFile(file); err == nil {
				term = cons
			}
		}
		if term == nil {
			fmt.Fprintln(o.streams.Err, "Unable to use a TTY - input is not a terminal or the right kind of file")
		}
	}
	if term != nil {
		start.Tty = true
		if ws, err := term.Size(); err == nil {
			start.Size = &streamv1.TerminalSize{Width: uint32(ws.Width), Height: uint32(ws.Height)}
		}
		if err := term.SetRaw(); err != nil {
			return fmt.Errorf("terminal: %w", err)
		}
		defer func() { _ = term.Reset() }()
	}
	streamCtx, stop := context.WithCancel(ctx)
	defer stop()
	var stream streamv1.PodStreams_ExecClient
	var err error
	if command != nil {
		stream, err = c.PodStreams().Exec(streamCtx)
	} else {
		stream, err = c.PodStreams().Attach(streamCtx)
	}
	if err != nil {
		return err
	}
	var sendMu sync.Mutex
	send := func(in *streamv1.ExecInput) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(in)
	}
	if err := send(&streamv1.ExecInput{Input: &streamv1.ExecInput_Start{Start: start}}); err != nil {
		return callStatus(err, stream.Recv)
	}
	if command == nil && f.stdin && term != nil {
		// The shell printed its prompt before we attached (kubectl's hint).
		fmt.Fprint(o.streams.Err, "If you don't see a command prompt, try pressing enter.\r\n")
	}
	if f.stdin {
		go copyStdin(o.streams.In, send)
	}
	if term != nil {
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		go func() {
			for {
				select {
				case <-streamCtx.Done():
					return
				case <-winch:
					if ws, err := term.Size(); err == nil {
						_ = send(&streamv1.ExecInput{Input: &streamv1.ExecInput_Resize{Resize: &streamv1.TerminalSize{Width: uint32(ws.Width), Height: uint32(ws.Height)}}})
					}
				}
			}
		}()
	}
	for {
		out, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return errors.New("the stream ended without the command's exit code")
		}
		if err != nil {
			if command == nil && ctx.Err() != nil {
				return nil // an interrupted attach detaches
			}
			return err
		}
		switch {
		case out.GetStdout() != nil:
			if _, err := o.streams.Out.Write(out.GetStdout()); err != nil {
				return err
			}
		case out.GetStderr() != nil:
			if _, err := o.streams.Err.Write(out.GetStderr()); err != nil {
				return err
			}
		case out.GetExit() != nil:
			if code := int(out.GetExit().GetCode()); code != 0 {
				return &ExitError{Code: code}
			}
			return nil
		}
	}
}

// copyStdin sends in as stdin messages until EOF (then stdin_close) or a
// failed send (the call ended). Each send waits for flow control: a
// command that reads slowly slows the reading here.
func copyStdin(in io.Reader, send func(*streamv1.ExecInput) error) {
	buf := make([]byte, 32<<10)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if serr := send(&streamv1.ExecInput{Input: &streamv1.ExecInput_Stdin{Stdin: append([]byte(nil), buf[:n]...)}}); serr != nil {
				return
			}
		}
		if err != nil {
			_ = send(&streamv1.ExecInput{Input: &streamv1.ExecInput_StdinClose{StdinClose: true}})
			return
		}
	}
}

// callStatus is why a call ended when a Send failed: gRPC's Send reports
// only io.EOF, and the status comes from the next Recv.
func callStatus[T any](sendErr error, recv func() (T, error)) error {
	if _, err := recv(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return sendErr
}
