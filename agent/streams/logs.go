package streams

import (
	"bufio"
	"time"

	"github.com/skiffhq/skiff/agent/runtime"
	streamv1 "github.com/skiffhq/skiff/proto/stream/v1"
)

// chunkSize is the most one message carries: large enough that a fast
// log costs few messages (each costs the relay a receive and a send),
// small against the relay's 1 MiB stream window.
const chunkSize = 128 << 10

// Logs implements NodeStreams.
func (s *Server) Logs(req *streamv1.LogsRequest, stream streamv1.NodeStreams_LogsServer) error {
	uid, ctr, err := s.resolve(req.GetPod())
	if err != nil {
		return err
	}
	opts := runtime.LogOptions{Follow: req.GetFollow(), Timestamps: req.GetTimestamps(), Previous: req.GetPrevious()}
	if req.TailLines != nil {
		opts.TailLines = int(req.GetTailLines())
	}
	if req.GetSinceTime() != nil {
		opts.SinceTime = req.GetSinceTime().AsTime()
	}
	if req.TailLines != nil && req.GetTailLines() == 0 { // kubectl --tail 0: nothing of the past
		if !opts.Follow {
			return nil
		}
		opts.SinceTime = time.Now() // with -f: only new lines
	}
	w := bufio.NewWriterSize(sendWriter(func(p []byte) error {
		return stream.Send(&streamv1.LogsChunk{Data: p})
	}), chunkSize)
	if err := s.cfg.Runtime.Logs(stream.Context(), uid, ctr, opts, w); err != nil {
		return toStatus(err)
	}
	return toStatus(w.Flush())
}

// sendWriter sends each write as one message. Send serializes before it
// returns, so the caller may reuse p at once.
type sendWriter func(p []byte) error

func (f sendWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := f(p); err != nil {
		return 0, err
	}
	return len(p), nil
}
