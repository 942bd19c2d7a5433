package codec

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	// gRPC's own codec registers itself under the same name at init: the
	// import makes that happen before ours replaces it.
	_ "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// vtMessage is what vtprotobuf generates for a message.
type vtMessage interface {
	SizeVT() int
	MarshalToSizedBufferVT([]byte) (int, error)
	UnmarshalVT([]byte) error
}

// aliasingMessage decodes strings and bytes as views into its input.
type aliasingMessage interface {
	UnmarshalVTUnsafe([]byte) error
}

type cloner interface {
	CloneMessageVT() proto.Message
}

// Marshal encodes m. Map entries come in Go's map order: use
// proto.MarshalOptions{Deterministic: true} where bytes are compared or hashed.
func Marshal(m proto.Message) ([]byte, error) {
	if vt, ok := m.(vtMessage); ok {
		b := make([]byte, vt.SizeVT())
		n, err := vt.MarshalToSizedBufferVT(b)
		return b[len(b)-n:], err
	}
	return proto.Marshal(m)
}

// merge is how both decoders treat fields m already has: as a protobuf
// parser treats a message's repeated occurrences (the generated decoders
// never reset m). Decode into a new message for a plain decode.
var merge = proto.UnmarshalOptions{Merge: true}

// Unmarshal decodes b into m (merging); m shares nothing with b.
func Unmarshal(b []byte, m proto.Message) error {
	if vt, ok := m.(vtMessage); ok {
		return vt.UnmarshalVT(b)
	}
	return merge.Unmarshal(b, m)
}

// UnmarshalAliasing decodes b into m (merging) with m's strings and bytes
// pointing into b instead of copies: about twice as fast, and b stays in
// memory as long as any of them does. Only for b that nothing ever writes
// to again (stored values, a received message's own bytes). Aliased bytes
// fields have their capacity capped (see the Makefile), so an append to
// one copies.
func UnmarshalAliasing(b []byte, m proto.Message) error {
	if vt, ok := m.(aliasingMessage); ok {
		return vt.UnmarshalVTUnsafe(b)
	}
	return merge.Unmarshal(b, m)
}

// Clone is a deep copy of m.
func Clone[T proto.Message](m T) T {
	if c, ok := any(m).(cloner); ok {
		return c.CloneMessageVT().(T)
	}
	return proto.Clone(m).(T)
}

func init() { encoding.RegisterCodecV2(grpcCodec{}) }

// grpcCodec is gRPC's default codec ("proto"), pooling buffers as gRPC's
// own does, with the generated code where a message has it.
type grpcCodec struct{}

func (grpcCodec) Name() string { return "proto" }

func (grpcCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*Raw); ok {
		return r.take(), nil
	}
	vt, ok := v.(vtMessage)
	if !ok {
		m, ok := v.(proto.Message)
		if !ok {
			return nil, fmt.Errorf("codec: cannot marshal %T: not a protobuf message", v)
		}
		b, err := proto.Marshal(m)
		return mem.BufferSlice{mem.SliceBuffer(b)}, err
	}
	size := vt.SizeVT()
	if mem.IsBelowBufferPoolingThreshold(size) {
		b := make([]byte, size)
		if _, err := vt.MarshalToSizedBufferVT(b); err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	if _, err := vt.MarshalToSizedBufferVT((*buf)[:size]); err != nil {
		pool.Put(buf)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

func (grpcCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*Raw); ok {
		r.keep(data)
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("codec: cannot unmarshal into %T: not a protobuf message", v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	// The buffer goes back to the pool: decode copies, never aliases.
	if vt, ok := m.(vtMessage); ok {
		proto.Reset(m)
		return vt.UnmarshalVT(buf.ReadOnlyData())
	}
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}
