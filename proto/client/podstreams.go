package client

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/skiffhq/skiff/proto/codec"
	streamv1 "github.com/skiffhq/skiff/proto/stream/v1"
)

// PodStreams is the stream service to pods' containers (logs, exec,
// attach, port-forward) on the server the client uses now. The API server
// authorizes each call (RBAC: get pods/log for logs, create pods/exec, pods/attach, pods/portforward for the rest)
// and relays it to the pod's node. Calls on it do not fail over: a stream
// in flight cannot move to another server.
func (c *Client) PodStreams() streamv1.PodStreamsClient {
	ss := *c.servers.Load()
	return streamv1.NewPodStreamsClient(ss[c.current.Load()%uint64(len(ss))].conn)
}

// LogOptions select what Logs streams (kubectl logs' flags).
type LogOptions struct {
	// Container in the pod; "" for a pod with one container.
	Container string
	// Follow keeps streaming, across restarts of the container, until ctx
	// ends or the pod stops.
	Follow bool
	// TailLines, when not nil, starts that many lines before the end.
	TailLines *int64
	// Since, when not zero, skips lines written before it.
	Since      time.Time
	Timestamps bool
	// Previous reads the container's instance before its last restart.
	Previous bool
}

// Logs writes a container's log to w as it arrives, a message (up to the
// node's chunk, 256 KiB) at a time: in the pieces it arrived in, then a
// call of w's Flush() error if it has one, so a buffered w gathers each
// message into few writes and still shows a follow's output at once.
// Opening the stream
// fails over between servers like a read; once output has arrived, an
// error ends the call.
func (c *Client) Logs(ctx context.Context, ns, pod string, opts LogOptions, w io.Writer) error {
	req := &streamv1.LogsRequest{Pod: &streamv1.PodRef{Namespace: c.defaultNS(ns), Name: pod, Container: opts.Container},
		Follow: opts.Follow, TailLines: opts.TailLines, Timestamps: opts.Timestamps, Previous: opts.Previous}
	if !opts.Since.IsZero() {
		req.SinceTime = timestamppb.New(opts.Since)
	}
	ss := *c.servers.Load()
	var last error
	for range ss {
		started, err := c.logsOnce(ctx, req, w)
		if err == nil || started || !IsUnavailable(err) || ctx.Err() != nil {
			return err
		}
		last = err
		c.current.Add(1)
	}
	return last // every server said Unavailable: the node's port, most likely, which the message names
}

func (c *Client) logsOnce(ctx context.Context, req *streamv1.LogsRequest, w io.Writer) (started bool, err error) {
	stream, err := c.PodStreams().Logs(ctx, req)
	if err != nil {
		return false, err
	}
	flush, _ := w.(interface{ Flush() error })
	// Each chunk is received as its wire bytes and its data written to w
	// straight from the buffers gRPC read it into: no decode, no copy.
	for {
		m := new(codec.Raw)
		err := stream.RecvMsg(m)
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			return started, err
		}
		started = true
		err = m.WriteBytesField(logsChunkData, w)
		m.Free()
		if err == nil && flush != nil {
			err = flush.Flush()
		}
		if err != nil {
			return true, err
		}
	}
}

// logsChunkData is LogsChunk's data field.
var logsChunkData = (&streamv1.LogsChunk{}).ProtoReflect().Descriptor().Fields().ByName("data").Number()
