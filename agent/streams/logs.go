package streams

import (
	"time"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/skiffhq/skiff/agent/runtime"
	"github.com/skiffhq/skiff/proto/codec"
	streamv1 "github.com/skiffhq/skiff/proto/stream/v1"
)

// ChunkSize is the most log payload one message carries. Each message
// costs every hop a receive, a send and a goroutine hand-off, so a fast
// log goes in few large ones; 256 KiB keeps a message well under gRPC's
// 4 MiB receive limit and an eighth of the relay's per-stream window
// (api.NodeStreamWindow), so several are in flight on each hop. A slow log
// is sent as it comes: the runtime flushes whenever it caught up.
const ChunkSize = 256 << 10

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
	w := &chunkWriter{send: func(m *codec.Raw) error { return stream.SendMsg(m) }, pool: mem.DefaultBufferPool()}
	defer w.free()
	if err := s.cfg.Runtime.Logs(stream.Context(), uid, ctr, opts, w); err != nil {
		return toStatus(err)
	}
	return toStatus(w.Flush())
}

// chunkHeader is room for a LogsChunk's encoding before its data: the
// tag of field 1 and the data's length as a varint.
const chunkHeader = 1 + 4

// chunkWriter collects written bytes into LogsChunk messages of up to
// ChunkSize, encoded in place: the payload is copied once, from the
// runtime's read buffer into the message's buffer, which gRPC then
// sends as it is (a codec.Raw) and returns to the pool once written.
// Flush sends what it holds (the runtime calls it whenever it caught up
// with the file, so a follow is not held back by a part-filled chunk).
type chunkWriter struct {
	send func(*codec.Raw) error
	pool mem.BufferPool
	buf  *[]byte // chunkHeader bytes of room, then n bytes of payload; nil when empty
	n    int
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if c.buf == nil {
			c.buf = c.pool.Get(chunkHeader + ChunkSize)
		}
		k := copy((*c.buf)[chunkHeader+c.n:chunkHeader+ChunkSize], p)
		c.n += k
		p = p[k:]
		written += k
		if c.n == ChunkSize {
			if err := c.Flush(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// Flush sends the chunk being filled, if any.
func (c *chunkWriter) Flush() error {
	if c.n == 0 {
		return nil
	}
	// The header goes right before the data: the tag, then the length.
	start := chunkHeader - 1 - protowire.SizeVarint(uint64(c.n))
	b := *c.buf
	hdr := protowire.AppendTag(b[start:start], 1, protowire.BytesType) // LogsChunk.data
	protowire.AppendVarint(hdr, uint64(c.n))
	whole := mem.NewBuffer(c.buf, c.pool)
	msg := whole.Slice(start, chunkHeader+c.n) // a view: the pool gets the buffer back once gRPC frees it
	whole.Free()
	c.buf, c.n = nil, 0
	m := codec.NewRaw(mem.BufferSlice{msg})
	if err := c.send(m); err != nil {
		m.Free() // a no-op once gRPC took it
		return err
	}
	return nil
}

// free returns an unsent buffer to the pool.
func (c *chunkWriter) free() {
	if c.buf != nil {
		c.pool.Put(c.buf)
		c.buf, c.n = nil, 0
	}
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
