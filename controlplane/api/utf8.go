package api

import (
	"fmt"
	"strconv"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
)

// Every string the API stores is valid UTF-8.
//
// The generated decoders (vtprotobuf, proto/codec) do not check what
// protobuf-go's would: that a string field holds UTF-8. Without this check
// one caller could store an annotation, a ConfigMap value or an Event
// message that no client can print afterwards (YAML and JSON encoders
// refuse it), breaking `get -o yaml` of that kind for every user; a worker
// could do it to its own Node. So every object that arrives in a request
// is checked once, where it is decoded (unpack), and refused with
// InvalidArgument naming the field: `metadata.annotations["x"]`,
// `data["key"]`, `message`.
//
// The check runs on every create and status update (the scheduler
// benchmark's hot path), so it reads the request's own wire bytes with a
// plan per message type — which fields are strings, which messages contain
// strings at any depth — instead of walking the decoded message by
// reflection; only a refusal walks the message to name the field.
// BENCHMARKS.md ("API input checks and limits") has the cost per pod.

// utf8Plan says, for one message type, which fields to look into.
type utf8Plan struct {
	// fields is indexed by field number; the zero entry means "nothing
	// to check" (numbers, bools, bytes, messages without strings).
	fields []utf8Field
	// hasStrings: the message may hold a string at some depth.
	hasStrings bool
	// built: the plan is complete (false while its fields are being
	// planned, which a recursive message meets again).
	built bool
	// reflectOnly: field numbers too large for a table (none of Skiff's).
	reflectOnly bool
}

// maxPlannedField is the largest field number a plan's table holds.
const maxPlannedField = 4096

type utf8Field struct {
	str bool      // a string, singular or repeated
	msg *utf8Plan // a message (or map entry) that may hold strings
}

// utf8Plans caches plans by message name; plans never change.
var utf8Plans sync.Map // protoreflect.FullName → *utf8Plan

// planFor returns md's plan, building it (and those of the messages it
// holds) on first use.
func planFor(md protoreflect.MessageDescriptor) *utf8Plan {
	if p, ok := utf8Plans.Load(md.FullName()); ok {
		return p.(*utf8Plan)
	}
	p := buildPlan(md, map[protoreflect.FullName]*utf8Plan{})
	actual, _ := utf8Plans.LoadOrStore(md.FullName(), p)
	return actual.(*utf8Plan)
}

// buildPlan builds md's plan; building tracks plans under construction so
// a recursive message refers to itself instead of recursing forever.
func buildPlan(md protoreflect.MessageDescriptor, building map[protoreflect.FullName]*utf8Plan) *utf8Plan {
	if p, ok := building[md.FullName()]; ok {
		return p
	}
	p := &utf8Plan{}
	building[md.FullName()] = p
	fields := md.Fields()
	maxNum := 0
	for i := 0; i < fields.Len(); i++ {
		maxNum = max(maxNum, int(fields.Get(i).Number()))
	}
	if maxNum > maxPlannedField {
		// No table that large: walk such a message by reflection.
		p.hasStrings, p.built, p.reflectOnly = true, true, true
		return p
	}
	p.fields = make([]utf8Field, maxNum+1)
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		switch fd.Kind() {
		case protoreflect.StringKind:
			p.fields[fd.Number()].str = true
			p.hasStrings = true
		case protoreflect.MessageKind, protoreflect.GroupKind:
			// A map field is a repeated entry message with fields 1 and 2.
			// A plan still being built (a recursive message) is kept and
			// counted as holding strings: what it holds is not known yet.
			sub := buildPlan(fd.Message(), building)
			if sub.hasStrings || !sub.built {
				p.fields[fd.Number()].msg = sub
				p.hasStrings = true
			}
		}
	}
	p.built = true
	return p
}

// maxUTF8Depth bounds recursion on hostile nesting; the decoder accepted
// the message, so real kinds are far shallower.
const maxUTF8Depth = 100

// validUTF8 reports whether every string field in b, encoded message of
// this plan's type, is UTF-8. Malformed input reports false: the caller
// then asks the decoded message (which the decoder accepted) where.
func (p *utf8Plan) validUTF8(b []byte, depth int) bool {
	if depth > maxUTF8Depth || p.reflectOnly {
		return false
	}
	for len(b) > 0 {
		var num protowire.Number
		var typ protowire.Type
		if b[0] < 0x80 { // a one-byte tag: fields 1-15, nearly all of them
			num, typ = protowire.Number(b[0]>>3), protowire.Type(b[0]&7)
			b = b[1:]
		} else {
			var n int
			if num, typ, n = protowire.ConsumeTag(b); n < 0 {
				return false
			}
			b = b[n:]
		}
		if typ != protowire.BytesType {
			if typ == protowire.StartGroupType && int(num) < len(p.fields) && p.fields[num].msg != nil {
				return false // a group holding strings: let the walk decide (proto3 has none)
			}
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return false
			}
			b = b[n:]
			continue
		}
		var v []byte
		if len(b) > 0 && b[0] < 0x80 && int(b[0]) < len(b) { // a one-byte length
			v, b = b[1:1+b[0]], b[1+b[0]:]
		} else {
			var n int
			if v, n = protowire.ConsumeBytes(b); n < 0 {
				return false
			}
			b = b[n:]
		}
		if int(num) >= len(p.fields) {
			continue
		}
		switch f := &p.fields[num]; {
		case f.str:
			if !validString(v) {
				return false
			}
		case f.msg != nil:
			if !f.msg.validUTF8(v, depth+1) {
				return false
			}
		}
	}
	return true
}

// validString is utf8.Valid with a byte loop for the ASCII prefix: API
// strings are short and mostly ASCII, and the loop beats the call.
func validString(v []byte) bool {
	for i, c := range v {
		if c >= utf8.RuneSelf {
			return utf8.Valid(v[i:])
		}
	}
	return true
}

// checkUTF8 refuses obj, decoded from wire, if a string in it is not
// UTF-8, naming the field.
func checkUTF8(k *kinds.Kind, wire []byte, obj kinds.Object) error {
	if planFor(obj.ProtoReflect().Descriptor()).validUTF8(wire, 0) {
		return nil
	}
	return checkObjectUTF8(k, obj)
}

// checkObjectUTF8 is the check for an object that has no wire bytes at
// hand (a patched object): a walk of the message by reflection.
func checkObjectUTF8(k *kinds.Kind, obj kinds.Object) error {
	path, value, ok := findInvalidUTF8(obj.ProtoReflect(), "", 0)
	if !ok {
		return nil
	}
	// invalid quotes the name (%q), so a bad one prints escaped too.
	return invalid(k, obj.GetMetadata().GetName(), kinds.FieldErrors{kinds.Invalid(path, shortValue(value), invalidUTF8Detail(value))})
}

// findInvalidUTF8 returns the path and value of a string in m that is not
// UTF-8 (the first that Range meets), and whether there is one.
func findInvalidUTF8(m protoreflect.Message, path string, depth int) (string, string, bool) {
	if depth > maxUTF8Depth {
		return path, "", false
	}
	var badPath, badValue string
	found := false
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := fieldPath(path, fd.JSONName())
		switch {
		case fd.IsMap():
			v.Map().Range(func(mk protoreflect.MapKey, mv protoreflect.Value) bool {
				kp := p + "[" + strconv.Quote(mk.String()) + "]"
				if fd.MapKey().Kind() == protoreflect.StringKind && !utf8.ValidString(mk.String()) {
					badPath, badValue, found = kp, mk.String(), true
					return false
				}
				badPath, badValue, found = invalidIn(fd.MapValue(), mv, kp, depth)
				return !found
			})
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && !found; i++ {
				badPath, badValue, found = invalidIn(fd, l.Get(i), p+"["+strconv.Itoa(i)+"]", depth)
			}
		default:
			badPath, badValue, found = invalidIn(fd, v, p, depth)
		}
		return !found
	})
	return badPath, badValue, found
}

// invalidIn checks one value of field fd (an element, for lists and maps).
func invalidIn(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string, depth int) (string, string, bool) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		if s := v.String(); !utf8.ValidString(s) {
			return path, s, true
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return findInvalidUTF8(v.Message(), path, depth+1)
	}
	return "", "", false
}

func fieldPath(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// shortValue is at most the first 64 bytes of s: enough to recognize it
// in the error (quoted there, so the invalid bytes show as \xNN), without
// echoing a megabyte annotation.
func shortValue(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}

// invalidUTF8Detail says where in s the first invalid byte is.
func invalidUTF8Detail(s string) string {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size <= 1 {
				return "is not valid UTF-8 (invalid byte at offset " + strconv.Itoa(i) + "); every string the API stores must be UTF-8"
			}
		}
	}
	return "is not valid UTF-8"
}

// checkPatchUTF8 refuses a patch body that is not UTF-8. Decoding JSON
// would silently turn such bytes into U+FFFD; the caller should learn that
// its patch is wrong instead.
func checkPatchUTF8(patch []byte) error {
	if utf8.Valid(patch) {
		return nil
	}
	off := 0
	for off < len(patch) {
		r, size := utf8.DecodeRune(patch[off:])
		if r == utf8.RuneError && size <= 1 {
			break
		}
		off += size
	}
	return fmt.Errorf("%w: patch is not valid UTF-8 (invalid byte at offset %d); every string the API stores must be UTF-8", ErrInvalid, off)
}
