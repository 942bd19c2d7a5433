package streams

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/agent/runtime"
	streamv1 "github.com/skiffhq/skiff/proto/stream/v1"
)

// execStream is the server side of Exec and Attach.
type execStream interface {
	Send(*streamv1.ExecOutput) error
	Recv() (*streamv1.ExecInput, error)
	Context() context.Context
}

// lockedSender serializes Sends from the stdout and stderr copies (a gRPC
// stream allows one sender at a time).
type lockedSender struct {
	mu sync.Mutex
	s  execStream
}

func (l *lockedSender) send(m *streamv1.ExecOutput) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.s.Send(m)
}

func (l *lockedSender) writer(stderr bool) io.Writer {
	return sendWriter(func(p []byte) error {
		if stderr {
			return l.send(&streamv1.ExecOutput{Output: &streamv1.ExecOutput_Stderr{Stderr: p}})
		}
		return l.send(&streamv1.ExecOutput{Output: &streamv1.ExecOutput_Stdout{Stdout: p}})
	})
}

func firstStart(stream execStream) (*streamv1.ExecStart, error) {
	in, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	start := in.GetStart()
	if start == nil {
		return nil, status.Error(codes.InvalidArgument, "the first message must be start")
	}
	return start, nil
}

// pumpInput reads the caller's inputs after start until the call ends:
// stdin into w (blocking until the command reads: back-pressure), resizes
// into resize. A caller that goes away cancels the command.
func pumpInput(stream execStream, w *io.PipeWriter, tty bool, resize chan<- runtime.WinSize, cancel context.CancelFunc) {
	defer close(resize)
	for {
		in, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				_ = w.Close() // half-close: no more input, the command goes on
				return
			}
			_ = w.CloseWithError(err)
			cancel()
			return
		}
		switch {
		case in.GetStdin() != nil:
			if _, err := w.Write(in.GetStdin()); err != nil {
				continue // the command stopped reading; drain until the call ends
			}
		case in.GetStdinClose():
			_ = w.Close()
		case in.GetResize() != nil && tty: // without a terminal there is nothing to resize
			select {
			case resize <- winSize(in.GetResize()):
			case <-stream.Context().Done():
				return
			}
		}
	}
}

func winSize(t *streamv1.TerminalSize) runtime.WinSize {
	return runtime.WinSize{Width: uint16(t.GetWidth()), Height: uint16(t.GetHeight())}
}

// Exec implements NodeStreams.
func (s *Server) Exec(stream streamv1.NodeStreams_ExecServer) error {
	start, err := firstStart(stream)
	if err != nil {
		return err
	}
	if len(start.GetCommand()) == 0 {
		return status.Error(codes.InvalidArgument, "command: required")
	}
	uid, ctr, err := s.resolve(start.GetPod())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	out := &lockedSender{s: stream}
	pr, pw := io.Pipe()
	defer pr.Close() // ends a stdin copy still reading after the command exited
	resize := make(chan runtime.WinSize)
	inputDone := make(chan struct{})
	go func() {
		defer close(inputDone)
		pumpInput(stream, pw, start.GetTty(), resize, cancel)
	}()
	opts := runtime.ExecOptions{Cmd: start.GetCommand(), Stdout: out.writer(false), Stderr: out.writer(true),
		TTY: start.GetTty(), Size: winSize(start.GetSize()), Resize: resize}
	if start.GetStdin() {
		opts.Stdin = pr
	}
	code, err := s.cfg.Runtime.Exec(ctx, uid, ctr, opts)
	if err != nil && code < 0 {
		return toStatus(err)
	}
	if err := out.send(&streamv1.ExecOutput{Output: &streamv1.ExecOutput_Exit{Exit: &streamv1.ExecExit{Code: int32(code)}}}); err != nil {
		return err
	}
	// The input pump ends when the caller half-closes or the call ends
	// (returning ends it); it is not waited for here.
	return nil
}

// Attach implements NodeStreams: the main process of a container, as
// the runtime attaches it (agent/runtime/attach.go): its output from now
// on, stdin when asked (the container must keep it open), terminal
// resizes. The last message is the process's exit code; a caller whose
// stdin ended (detached) gets code 0.
func (s *Server) Attach(stream streamv1.NodeStreams_AttachServer) error {
	start, err := firstStart(stream)
	if err != nil {
		return err
	}
	if len(start.GetCommand()) > 0 {
		return status.Error(codes.InvalidArgument, "command: attach takes none (use exec)")
	}
	uid, ctr, err := s.resolve(start.GetPod())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	out := &lockedSender{s: stream}
	pr, pw := io.Pipe()
	defer pr.Close()
	resize := make(chan runtime.WinSize)
	go pumpInput(stream, pw, true, resize, cancel) // the runtime ignores resizes without a terminal
	opts := runtime.AttachOptions{Stdout: out.writer(false), Stderr: out.writer(true), Size: winSize(start.GetSize()), Resize: resize}
	if start.GetStdin() {
		opts.Stdin = pr
	}
	res, err := s.cfg.Runtime.Attach(ctx, uid, ctr, opts)
	if err != nil {
		if stream.Context().Err() != nil {
			return toStatus(stream.Context().Err())
		}
		return toStatus(fmt.Errorf("attach: %w", err))
	}
	return out.send(&streamv1.ExecOutput{Output: &streamv1.ExecOutput_Exit{Exit: &streamv1.ExecExit{Code: int32(res.Code)}}})
}
