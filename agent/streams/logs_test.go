package streams

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/proto/codec"
	streamv1 "github.com/skiffhq/skiff/proto/stream/v1"
)

// The chunks a chunkWriter sends are LogsChunk messages as gRPC's codec
// puts them on the wire; together they are every byte written, in order,
// each at most ChunkSize, and Flush sends a part-filled one at once.
func TestChunkWriterSendsLogsChunks(t *testing.T) {
	var got bytes.Buffer
	var sizes []int
	c := encoding.GetCodecV2("proto")
	w := &chunkWriter{pool: mem.DefaultBufferPool(), send: func(m *codec.Raw) error {
		wire, err := c.Marshal(m) // what gRPC's send does with it
		if err != nil {
			return err
		}
		defer wire.Free()
		var chunk streamv1.LogsChunk
		if err := proto.Unmarshal(wire.Materialize(), &chunk); err != nil {
			t.Fatalf("chunk %d does not decode as LogsChunk: %v", len(sizes), err)
		}
		sizes = append(sizes, len(chunk.GetData()))
		got.Write(chunk.GetData())
		return nil
	}}
	var want bytes.Buffer
	write := func(p []byte) {
		t.Helper()
		n, err := w.Write(p)
		if err != nil || n != len(p) {
			t.Fatalf("Write(%d bytes) = %d, %v", len(p), n, err)
		}
		want.Write(p)
	}
	line := []byte("a log line of some length\n")
	for i := 0; i < 3*ChunkSize/len(line); i++ {
		write(line)
	}
	big := bytes.Repeat([]byte{'x'}, 2*ChunkSize+5) // one write larger than two chunks
	write(big)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	n := len(sizes)
	write([]byte("after the flush\n"))
	if len(sizes) != n {
		t.Fatalf("a short write was sent before Flush")
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(sizes) != n+1 || sizes[n] != len("after the flush\n") {
		t.Fatalf("Flush sent %v, want one chunk of the %d bytes held", sizes[n:], len("after the flush\n"))
	}
	if err := w.Flush(); err != nil || len(sizes) != n+1 {
		t.Fatalf("an empty Flush sent a chunk (%v)", err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("chunks carried %d bytes, want the %d written, in order", got.Len(), want.Len())
	}
	for i, s := range sizes {
		if s > ChunkSize || s == 0 {
			t.Fatalf("chunk %d has %d bytes, want 1..%d", i, s, ChunkSize)
		}
	}
	if sizes[0] != ChunkSize {
		t.Fatalf("a full chunk carried %d bytes, want %d", sizes[0], ChunkSize)
	}
}
