package codec

import (
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// Raw is a gRPC message kept as its wire bytes: receiving into a Raw
// decodes nothing, sending one encodes nothing. A relay that passes a
// stream's messages on unchanged (PodStreams' logs) receives and sends
// Raws and so never copies a byte of them; the buffers gRPC read the
// message into go out as they are.
//
// A Raw owns one reference to its buffers. Sending it hands them to gRPC
// (which frees them once written), so a Raw is sent at most once; Free
// releases one that is not sent.
type Raw struct {
	data mem.BufferSlice
}

// NewRaw is a Raw of b's bytes, b a complete encoded message. The Raw
// takes b's reference.
func NewRaw(b mem.BufferSlice) *Raw { return &Raw{data: b} }

// Len is the encoded message's length.
func (r *Raw) Len() int { return r.data.Len() }

// Free releases the buffers of a Raw that will not be sent.
func (r *Raw) Free() {
	r.data.Free()
	r.data = nil
}

// take hands the Raw's buffers to gRPC's send (see Raw).
func (r *Raw) take() mem.BufferSlice {
	d := r.data
	r.data = nil
	return d
}

// keep replaces the Raw's buffers with a reference to data (gRPC frees
// its own after the decode returns).
func (r *Raw) keep(data mem.BufferSlice) {
	r.data.Free()
	data.Ref()
	r.data = data
}

// errRawField: a Raw's bytes are not a valid protobuf message.
var errRawField = errors.New("codec: malformed message")

// WriteBytesField writes the contents of every occurrence of bytes field
// num of the message to w, straight from the buffers it arrived in (no
// decode, no copy), and skips the other fields. A log chunk's data goes
// to the user's terminal so.
func (r *Raw) WriteBytesField(num protowire.Number, w io.Writer) error {
	c := rawCursor{bufs: r.data}
	for !c.done() {
		tag, err := c.varint()
		if err != nil {
			return err
		}
		n, typ := protowire.DecodeTag(tag)
		if n <= 0 {
			return fmt.Errorf("%w: field number %d", errRawField, n)
		}
		switch typ {
		case protowire.VarintType:
			_, err = c.varint()
		case protowire.Fixed32Type:
			err = c.skip(4, nil)
		case protowire.Fixed64Type:
			err = c.skip(8, nil)
		case protowire.BytesType:
			var l uint64
			if l, err = c.varint(); err == nil {
				var out io.Writer
				if n == num {
					out = w
				}
				err = c.skip(l, out)
			}
		default:
			err = fmt.Errorf("%w: field %d has wire type %d", errRawField, n, typ)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// rawCursor walks a BufferSlice without joining its buffers.
type rawCursor struct {
	bufs mem.BufferSlice
	i    int // current buffer
	off  int // offset in it
}

func (c *rawCursor) done() bool {
	for c.i < len(c.bufs) && c.off >= c.bufs[c.i].Len() {
		c.i, c.off = c.i+1, 0
	}
	return c.i >= len(c.bufs)
}

func (c *rawCursor) varint() (uint64, error) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if c.done() {
			return 0, fmt.Errorf("%w: truncated varint", errRawField)
		}
		b := c.bufs[c.i].ReadOnlyData()[c.off]
		c.off++
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return v, nil
		}
	}
	return 0, fmt.Errorf("%w: varint overflows 64 bits", errRawField)
}

// skip moves n bytes on, writing them to w when it is not nil.
func (c *rawCursor) skip(n uint64, w io.Writer) error {
	for n > 0 {
		if c.done() {
			return fmt.Errorf("%w: truncated field (%d bytes missing)", errRawField, n)
		}
		d := c.bufs[c.i].ReadOnlyData()[c.off:]
		if uint64(len(d)) > n {
			d = d[:n]
		}
		if w != nil {
			if _, err := w.Write(d); err != nil {
				return err
			}
		}
		c.off += len(d)
		n -= uint64(len(d))
	}
	return nil
}
