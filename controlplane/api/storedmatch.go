package api

import (
	"fmt"
	"strconv"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// storedView is what selectors read of one stored record, worked out
// lazily and shared by every watch that sends the record (decodeCache).
// Selecting from the stored bytes rather than a decoded object is what
// makes the common selectors cheap: a label selector needs only the
// metadata, and a field selector like spec.nodeName=<node> (every agent's
// pod watch) a scan of the bytes down to one field. A whole object is
// decoded only for a selector the bytes cannot answer.
type storedView struct {
	k  *kinds.Kind
	kv *storepb.KeyValue

	metaOnce sync.Once
	meta     *apiv1.ObjectMeta
	metaErr  error

	objOnce sync.Once
	obj     kinds.Object
	objErr  error
}

func (v *storedView) metadata() (*apiv1.ObjectMeta, error) {
	v.metaOnce.Do(func() { v.meta, v.metaErr = decodeMeta(v.k, v.kv) })
	return v.meta, v.metaErr
}

func (v *storedView) object() (kinds.Object, error) {
	v.objOnce.Do(func() { v.obj, v.objErr = decode(v.k, v.kv) })
	return v.obj, v.objErr
}

// matchesStored is matches for a stored record.
func (s selection) matchesStored(v *storedView) (bool, error) {
	if !s.labels.Empty() {
		md, err := v.metadata()
		if err != nil {
			return false, err
		}
		if !s.labels.Matches(md.GetLabels()) {
			return false, nil
		}
	}
	if s.fields.Empty() {
		return true, nil
	}
	if !s.fields.onWire() {
		obj, err := v.object()
		if err != nil {
			return false, err
		}
		return s.fields.Matches(obj), nil
	}
	for _, r := range s.fields.reqs {
		val, err := wireFieldValue(v.kv.Value, r.fds)
		if err != nil {
			return false, fmt.Errorf("decode %s at %q: %s: %w", v.k.Name, v.kv.Key, r.raw, err)
		}
		if (val == r.value) != r.equal {
			return false, nil
		}
	}
	return true, nil
}

// onWire: every requirement can be read from stored bytes. Not the fields
// decode fills in (apiVersion, kind, metadata.resourceVersion: the stored
// value lacks them) nor floating-point and fixed-width ones (unused as
// selectors; the decoded object answers those).
func (s *FieldSelector) onWire() bool {
	for _, r := range s.reqs {
		if !r.onWire {
			return false
		}
	}
	return true
}

func fieldOnWire(path []string, fds []protoreflect.FieldDescriptor) bool {
	switch {
	case len(path) == 1 && (path[0] == "apiVersion" || path[0] == "kind"),
		len(path) == 2 && path[0] == "metadata" && path[1] == "resourceVersion":
		return false
	}
	switch fds[len(fds)-1].Kind() {
	case protoreflect.StringKind, protoreflect.BytesKind, protoreflect.BoolKind, protoreflect.EnumKind,
		protoreflect.Int32Kind, protoreflect.Int64Kind, protoreflect.Uint32Kind, protoreflect.Uint64Kind,
		protoreflect.Sint32Kind, protoreflect.Sint64Kind:
		return true
	}
	return false
}

// wireFieldValue is fieldValue for an encoded message: the scalar at fds
// formatted the same way, "" when a message on the path is absent or the
// field has presence and is unset.
func wireFieldValue(b []byte, fds []protoreflect.FieldDescriptor) (string, error) {
	w, set, reached, err := wireLookup(b, fds)
	if err != nil {
		return "", err
	}
	leaf := fds[len(fds)-1]
	switch {
	case !reached:
		return "", nil
	case !set && leaf.HasPresence():
		return "", nil
	case !set:
		return formatWire(leaf, wireScalar{}), nil
	}
	return formatWire(leaf, w), nil
}

// wireScalar is a leaf's encoded value: bytes or a varint.
type wireScalar struct {
	bytes  []byte
	varint uint64
}

// wireLookup finds the leaf of fds in b. Repeated occurrences of a field
// merge, as in a decoder: the last value set wins, and a message on the
// path counts as present if any occurrence of it is. reached reports that
// every message above the leaf is present.
func wireLookup(b []byte, fds []protoreflect.FieldDescriptor) (w wireScalar, set, reached bool, err error) {
	fd := fds[0]
	leaf := len(fds) == 1
	reached = leaf
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return w, false, false, protowire.ParseError(n)
		}
		b = b[n:]
		if num != fd.Number() {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return w, false, false, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		switch typ {
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return w, false, false, protowire.ParseError(n)
			}
			b = b[n:]
			if !leaf {
				sub, subSet, subReached, err := wireLookup(v, fds[1:])
				if err != nil {
					return w, false, false, err
				}
				reached = reached || subReached
				if subSet {
					w, set = sub, true
				}
				continue
			}
			if k := fd.Kind(); k != protoreflect.StringKind && k != protoreflect.BytesKind {
				return w, false, false, fmt.Errorf("field %s: bytes on the wire for a %s", fd.Name(), k)
			}
			w, set = wireScalar{bytes: v}, true
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return w, false, false, protowire.ParseError(n)
			}
			b = b[n:]
			if !leaf || fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.BytesKind {
				return w, false, false, fmt.Errorf("field %s: varint on the wire for a %s", fd.Name(), fd.Kind())
			}
			w, set = wireScalar{varint: v}, true
		default:
			return w, false, false, fmt.Errorf("field %s: unexpected wire type %d", fd.Name(), typ)
		}
	}
	return w, set, reached, nil
}

func formatWire(fd protoreflect.FieldDescriptor, w wireScalar) string {
	switch fd.Kind() {
	case protoreflect.StringKind, protoreflect.BytesKind:
		return string(w.bytes)
	case protoreflect.BoolKind:
		return strconv.FormatBool(w.varint != 0)
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(protoreflect.EnumNumber(int32(w.varint))); ev != nil {
			return string(ev.Name())
		}
		return strconv.FormatInt(int64(int32(w.varint)), 10)
	case protoreflect.Int32Kind:
		return strconv.FormatInt(int64(int32(w.varint)), 10)
	case protoreflect.Uint32Kind:
		return strconv.FormatUint(uint64(uint32(w.varint)), 10)
	case protoreflect.Uint64Kind:
		return strconv.FormatUint(w.varint, 10)
	case protoreflect.Sint32Kind:
		return strconv.FormatInt(int64(int32(protowire.DecodeZigZag(w.varint))), 10)
	case protoreflect.Sint64Kind:
		return strconv.FormatInt(protowire.DecodeZigZag(w.varint), 10)
	default: // Int64Kind
		return strconv.FormatInt(int64(w.varint), 10)
	}
}
