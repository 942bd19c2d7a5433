package manifest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// jsonWalker is the walker for already-parsed JSON (UnmarshalJSON, merge
// patches): same rules as the YAML walker, no lines.
type jsonWalker struct {
	problems []Problem
}

func (w *jsonWalker) fail(path, format string, args ...any) {
	if len(w.problems) < 100 {
		w.problems = append(w.problems, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
}

func jsonDescribe(v any) string {
	switch x := v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case nil:
		return "null"
	case bool:
		return "boolean " + strconv.FormatBool(x)
	case json.Number:
		return "number " + x.String()
	case string:
		return "string " + strconv.Quote(x)
	}
	return fmt.Sprintf("%T", v)
}

func (w *jsonWalker) message(v any, md protoreflect.MessageDescriptor, path string) any {
	m, ok := v.(map[string]any)
	if !ok {
		w.fail(path, "expected a mapping (object), got %s", jsonDescribe(v))
		return nil
	}
	out := map[string]any{}
	for name, val := range m {
		fp := join(path, name)
		fd := md.Fields().ByJSONName(name)
		if fd == nil || fd.JSONName() != name {
			w.fail(fp, "unknown field %q%s", name, suggest(name, md.Fields()))
			continue
		}
		if val == nil {
			continue
		}
		if r := w.field(val, fd, fp); r != nil {
			out[name] = r
		}
	}
	return out
}

func (w *jsonWalker) field(v any, fd protoreflect.FieldDescriptor, path string) any {
	switch {
	case fd.IsMap():
		m, ok := v.(map[string]any)
		if !ok {
			w.fail(path, "expected a mapping (object), got %s", jsonDescribe(v))
			return nil
		}
		out := map[string]any{}
		for k, e := range m {
			if e == nil {
				if fd.MapValue().Kind() == protoreflect.StringKind {
					out[k] = ""
				}
				continue
			}
			if r := w.single(e, fd.MapValue(), fd, path+"["+k+"]"); r != nil {
				out[k] = r
			}
		}
		return out
	case fd.IsList():
		l, ok := v.([]any)
		if !ok {
			w.fail(path, "expected a list, got %s", jsonDescribe(v))
			return nil
		}
		out := make([]any, 0, len(l))
		for i, e := range l {
			ep := path + "[" + strconv.Itoa(i) + "]"
			if e == nil {
				w.fail(ep, "list elements may not be null")
				continue
			}
			if r := w.single(e, fd, fd, ep); r != nil {
				out = append(out, r)
			}
		}
		return out
	}
	return w.single(v, fd, fd, path)
}

func (w *jsonWalker) single(v any, vd, opts protoreflect.FieldDescriptor, path string) any {
	switch vd.Kind() {
	case protoreflect.MessageKind:
		return w.message(v, vd.Message(), path)
	case protoreflect.StringKind:
		switch x := v.(type) {
		case string:
			return x
		case json.Number:
			if isQuantity(opts) {
				return x.String()
			}
			if isIntOrString(opts) {
				i, err := x.Int64()
				if err != nil {
					w.fail(path, "expected an integer or a string, got number %s", x)
					return nil
				}
				return strconv.FormatInt(i, 10)
			}
		}
	case protoreflect.BoolKind:
		if b, ok := v.(bool); ok {
			return b
		}
		w.fail(path, "expected a boolean (true or false), got %s", jsonDescribe(v))
		return nil
	case protoreflect.BytesKind:
		if s, ok := v.(string); ok {
			if _, err := base64.StdEncoding.DecodeString(s); err != nil {
				w.fail(path, "illegal base64 data: %v", err)
				return nil
			}
			return s
		}
	default: // integers
		n, ok := v.(json.Number)
		if !ok {
			w.fail(path, "expected an integer, got %s", jsonDescribe(v))
			return nil
		}
		i, err := n.Int64()
		bits32 := vd.Kind() == protoreflect.Int32Kind || vd.Kind() == protoreflect.Sint32Kind || vd.Kind() == protoreflect.Sfixed32Kind
		if err != nil || (bits32 && (i < math.MinInt32 || i > math.MaxInt32)) {
			w.fail(path, "%s is not an integer in range", n)
			return nil
		}
		return json.Number(strconv.FormatInt(i, 10))
	}
	w.fail(path, "expected %s, got %s", kindName(vd, opts), jsonDescribe(v))
	return nil
}
