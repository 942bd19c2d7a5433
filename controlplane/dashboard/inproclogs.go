package dashboard

import (
	"context"
	"errors"
	"io"

	streamv1 "github.com/skiffhq/skiff/proto/stream/v1"
)

// Logs makes InProcess the dashboard's LogSource: the API server's own
// PodStreams relay, called as the session's user (ctx carries it), so the
// API decides who may read which pod's log and the node's stream port
// serves it exactly as it serves `ctl logs`.
//
// The first message (or the refusal) is awaited here, so a pod without a
// log or a caller without the right is an error the page shows, not an
// empty stream.
func (p *InProcess) Logs(ctx context.Context, namespace, pod, container string, follow bool) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := p.Streams.Logs(ctx, &streamv1.LogsRequest{
		Pod:    &streamv1.PodRef{Namespace: namespace, Name: pod, Container: container},
		Follow: follow,
	})
	if err != nil {
		cancel()
		return nil, err
	}
	first, err := stream.Recv()
	if err != nil && !errors.Is(err, io.EOF) {
		cancel()
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		defer cancel()
		if errors.Is(err, io.EOF) {
			_ = pw.Close()
			return
		}
		for m := first; ; {
			if _, werr := pw.Write(m.GetData()); werr != nil {
				return // the page went away: cancel ends the relay
			}
			var rerr error
			if m, rerr = stream.Recv(); rerr != nil {
				if errors.Is(rerr, io.EOF) {
					rerr = nil
				}
				_ = pw.CloseWithError(rerr)
				return
			}
		}
	}()
	return &cancelOnClose{ReadCloser: pr, cancel: cancel}, nil
}

// cancelOnClose ends the log stream when the page stops reading.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	c.cancel()
	return c.ReadCloser.Close()
}
