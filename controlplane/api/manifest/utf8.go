package manifest

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// invalidUTF8 locates the first byte of data that is not UTF-8, as a
// Problem with its line, or returns false when data is UTF-8 (or UTF-16
// with a byte-order mark, which the YAML parser reads too). The parser
// itself only says "invalid leading UTF-8 octet", without a line; the API
// server would refuse the object anyway, naming the field, but the line
// is what an editor needs.
func invalidUTF8(data []byte) (Problem, bool) {
	if utf8.Valid(data) || bytes.HasPrefix(data, []byte{0xFE, 0xFF}) || bytes.HasPrefix(data, []byte{0xFF, 0xFE}) {
		return Problem{}, false
	}
	line, lineStart := 1, 0
	for off := 0; off < len(data); {
		r, size := utf8.DecodeRune(data[off:])
		if r == utf8.RuneError && size <= 1 {
			col := utf8.RuneCount(data[lineStart:off]) + 1
			return Problem{Line: line, Msg: fmt.Sprintf("column %d: byte 0x%02x is not valid UTF-8; manifests must be UTF-8 text", col, data[off])}, true
		}
		if r == '\n' {
			line, lineStart = line+1, off+1
		}
		off += size
	}
	return Problem{}, false
}

// replaceInvalidUTF8 replaces, in place, every string of m (map keys
// too, at any depth) that is not UTF-8 by its strings.ToValidUTF8 form
// with U+FFFD, and reports whether it changed any.
func replaceInvalidUTF8(m protoreflect.Message) bool {
	changed := false
	fix := func(s string) (string, bool) {
		if utf8.ValidString(s) {
			return s, false
		}
		return strings.ToValidUTF8(s, "\uFFFD"), true
	}
	value := func(fd protoreflect.FieldDescriptor, v protoreflect.Value) (protoreflect.Value, bool) {
		switch fd.Kind() {
		case protoreflect.StringKind:
			if s, ok := fix(v.String()); ok {
				return protoreflect.ValueOfString(s), true
			}
		case protoreflect.MessageKind, protoreflect.GroupKind:
			if replaceInvalidUTF8(v.Message()) {
				changed = true
			}
		}
		return v, false
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			mp := v.Map()
			type entry struct {
				k protoreflect.MapKey
				v protoreflect.Value
			}
			var redo []entry
			mp.Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				nv, changedValue := value(fd.MapValue(), mv)
				nk, changedKey := k, false
				if fd.MapKey().Kind() == protoreflect.StringKind {
					var s string
					if s, changedKey = fix(k.String()); changedKey {
						nk = protoreflect.ValueOfString(s).MapKey()
					}
				}
				if changedValue || changedKey {
					redo = append(redo, entry{k, mv}, entry{nk, nv})
				}
				return true
			})
			for i := 0; i < len(redo); i += 2 {
				mp.Clear(redo[i].k)
				mp.Set(redo[i+1].k, redo[i+1].v)
				changed = true
			}
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				if nv, ok := value(fd, l.Get(i)); ok {
					l.Set(i, nv)
					changed = true
				}
			}
		default:
			if nv, ok := value(fd, v); ok {
				m.Set(fd, nv)
				changed = true
			}
		}
		return true
	})
	return changed
}
