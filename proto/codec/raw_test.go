package codec

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// splitInto cuts b into buffers of at most n bytes, as gRPC hands a
// message over in the HTTP/2 frames it arrived in.
func splitInto(b []byte, n int) mem.BufferSlice {
	var out mem.BufferSlice
	for len(b) > 0 {
		k := min(n, len(b))
		out = append(out, mem.Copy(b[:k], mem.DefaultBufferPool()))
		b = b[k:]
	}
	return out
}

// A Raw passes a message through the codec byte for byte, and the data
// of its bytes field comes out whole however the buffers cut it.
func TestRawPassesThroughAndWritesField(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	// bytes field 1, a varint field 2 and a bytes field 3 to skip, field 1 again.
	var msg []byte
	msg = protowire.AppendTag(msg, 1, protowire.BytesType)
	msg = protowire.AppendBytes(msg, data[:40000])
	msg = protowire.AppendTag(msg, 2, protowire.VarintType)
	msg = protowire.AppendVarint(msg, 1<<40)
	msg = protowire.AppendTag(msg, 3, protowire.BytesType)
	msg = protowire.AppendBytes(msg, []byte("not this"))
	msg = protowire.AppendTag(msg, 4, protowire.Fixed64Type)
	msg = protowire.AppendFixed64(msg, 7)
	msg = protowire.AppendTag(msg, 1, protowire.BytesType)
	msg = protowire.AppendBytes(msg, data[40000:])

	c := encoding.GetCodecV2("proto")
	for _, cut := range []int{1, 7, 16 << 10, len(msg)} {
		in := splitInto(msg, cut)
		r := new(Raw)
		if err := c.Unmarshal(in, r); err != nil {
			t.Fatal(err)
		}
		in.Free() // gRPC frees its own after the decode: the Raw keeps a reference
		if r.Len() != len(msg) {
			t.Fatalf("cut %d: Raw holds %d bytes, want %d", cut, r.Len(), len(msg))
		}
		var got bytes.Buffer
		if err := r.WriteBytesField(1, &got); err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if !bytes.Equal(got.Bytes(), data) {
			t.Fatalf("cut %d: field 1 gave %d bytes, want the %d written", cut, got.Len(), len(data))
		}
		out, err := c.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Materialize(), msg) {
			t.Fatalf("cut %d: re-encoded Raw differs from what came in", cut)
		}
		out.Free()
		if r.Len() != 0 {
			t.Fatalf("cut %d: a sent Raw still holds %d bytes (sent twice would send them twice)", cut, r.Len())
		}
		r.Free() // after the send: a no-op
	}

	// What a Raw carries is the message protobuf-go reads.
	want := &wrapperspb.BytesValue{Value: data}
	enc, _ := proto.Marshal(want)
	r := NewRaw(splitInto(enc, 1000))
	out, err := c.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got wrapperspb.BytesValue
	if err := proto.Unmarshal(out.Materialize(), &got); err != nil || !bytes.Equal(got.Value, data) {
		t.Fatalf("protobuf-go read of a Raw: %v (%d bytes)", err, len(got.Value))
	}
}

func TestRawRefusesMalformed(t *testing.T) {
	for name, b := range map[string][]byte{
		"truncated length":         {0x0a, 0x80},
		"data shorter than length": {0x0a, 0x05, 'a', 'b'},
		"field number 0":           {0x02, 0x00},
		"group wire type":          {0x0b},
	} {
		r := NewRaw(mem.BufferSlice{mem.SliceBuffer(b)})
		var out bytes.Buffer
		if err := r.WriteBytesField(1, &out); !errors.Is(err, errRawField) {
			t.Errorf("%s (% x): %v, want a malformed-message error", name, b, err)
		}
	}
}

// A failing writer's error comes back as it is (the log reader stops on it).
func TestRawWriteError(t *testing.T) {
	stop := errors.New("enough")
	b := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte("hello"))
	r := NewRaw(mem.BufferSlice{mem.SliceBuffer(b)})
	if err := r.WriteBytesField(1, failWriter{stop}); !errors.Is(err, stop) {
		t.Fatalf("got %v, want the writer's error", err)
	}
}

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }
