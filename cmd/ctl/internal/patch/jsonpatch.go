package patch

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// ErrInvalid is wrapped by every error about the patch itself.
var ErrInvalid = errors.New("invalid patch")

// ErrTestFailed: a "test" operation did not match.
var ErrTestFailed = errors.New("test operation failed")

type operation struct {
	Op    string           `json:"op"`
	Path  *string          `json:"path"`
	From  *string          `json:"from"`
	Value *json.RawMessage `json:"value"`
}

// JSONPatch applies an RFC 6902 patch to doc. Operations apply in order;
// the first that fails stops the patch, its index and path in the error.
func JSONPatch(doc, patch []byte) ([]byte, error) {
	var ops []operation
	if err := json.Unmarshal(patch, &ops); err != nil {
		return nil, fmt.Errorf("%w: a JSON patch is a JSON array of operations: %v", ErrInvalid, err)
	}
	var root any
	if err := json.Unmarshal(doc, &root); err != nil {
		return nil, fmt.Errorf("document: %w", err)
	}
	for i, op := range ops {
		var err error
		root, err = apply(root, op)
		if err != nil {
			path := ""
			if op.Path != nil {
				path = *op.Path
			}
			return nil, fmt.Errorf("operation %d (%s %s): %w", i, op.Op, path, err)
		}
	}
	return json.Marshal(root)
}

func apply(root any, op operation) (any, error) {
	if op.Path == nil {
		return nil, fmt.Errorf("%w: \"path\" is required", ErrInvalid)
	}
	path, err := parsePointer(*op.Path)
	if err != nil {
		return nil, err
	}
	value := func() (any, error) {
		if op.Value == nil {
			return nil, fmt.Errorf("%w: \"value\" is required for %s", ErrInvalid, op.Op)
		}
		var v any
		err := json.Unmarshal(*op.Value, &v)
		return v, err
	}
	from := func() ([]string, error) {
		if op.From == nil {
			return nil, fmt.Errorf("%w: \"from\" is required for %s", ErrInvalid, op.Op)
		}
		return parsePointer(*op.From)
	}
	switch op.Op {
	case "add":
		v, err := value()
		if err != nil {
			return nil, err
		}
		return add(root, path, v)
	case "remove":
		r, _, err := remove(root, path)
		return r, err
	case "replace":
		v, err := value()
		if err != nil {
			return nil, err
		}
		r, _, err := remove(root, path)
		if err != nil {
			return nil, err
		}
		return add(r, path, v)
	case "move":
		f, err := from()
		if err != nil {
			return nil, err
		}
		r, v, err := remove(root, f)
		if err != nil {
			return nil, err
		}
		return add(r, path, v)
	case "copy":
		f, err := from()
		if err != nil {
			return nil, err
		}
		v, err := get(root, f)
		if err != nil {
			return nil, err
		}
		return add(root, path, deepCopy(v))
	case "test":
		v, err := value()
		if err != nil {
			return nil, err
		}
		have, err := get(root, path)
		if err != nil {
			return nil, err
		}
		if !reflect.DeepEqual(have, v) {
			return nil, fmt.Errorf("%w: value is %s", ErrTestFailed, mustJSON(have))
		}
		return root, nil
	}
	return nil, fmt.Errorf("%w: unknown op %q (add, remove, replace, move, copy, test)", ErrInvalid, op.Op)
}

func parsePointer(p string) ([]string, error) {
	if p == "" {
		return nil, nil
	}
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("%w: path %q must start with /", ErrInvalid, p)
	}
	parts := strings.Split(p[1:], "/")
	for i, s := range parts {
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
	}
	return parts, nil
}

func get(node any, path []string) (any, error) {
	for i, tok := range path {
		switch n := node.(type) {
		case map[string]any:
			v, ok := n[tok]
			if !ok {
				return nil, fmt.Errorf("%w: /%s does not exist", ErrInvalid, strings.Join(path[:i+1], "/"))
			}
			node = v
		case []any:
			idx, err := index(tok, len(n), false)
			if err != nil {
				return nil, err
			}
			node = n[idx]
		default:
			return nil, fmt.Errorf("%w: /%s is not an object or array", ErrInvalid, strings.Join(path[:i], "/"))
		}
	}
	return node, nil
}

func index(tok string, n int, forAdd bool) (int, error) {
	if forAdd && tok == "-" {
		return n, nil
	}
	i, err := strconv.Atoi(tok)
	if err != nil || i < 0 || (tok != "0" && strings.HasPrefix(tok, "0")) {
		return 0, fmt.Errorf("%w: %q is not an array index", ErrInvalid, tok)
	}
	if i > n || (!forAdd && i == n) {
		return 0, fmt.Errorf("%w: index %d is out of range (length %d)", ErrInvalid, i, n)
	}
	return i, nil
}

// add sets path to v, inserting into arrays; it returns the new root.
func add(root any, path []string, v any) (any, error) {
	if len(path) == 0 {
		return v, nil
	}
	parent, err := get(root, path[:len(path)-1])
	if err != nil {
		return nil, err
	}
	last := path[len(path)-1]
	switch p := parent.(type) {
	case map[string]any:
		p[last] = v
		return root, nil
	case []any:
		i, err := index(last, len(p), true)
		if err != nil {
			return nil, err
		}
		grown := append(p[:i:i], append([]any{v}, p[i:]...)...)
		return setAt(root, path[:len(path)-1], grown)
	}
	return nil, fmt.Errorf("%w: parent of %s is not an object or array", ErrInvalid, "/"+strings.Join(path, "/"))
}

// remove deletes path, returning the new root and the value removed.
func remove(root any, path []string) (any, any, error) {
	if len(path) == 0 {
		return nil, nil, fmt.Errorf("%w: cannot remove the whole document", ErrInvalid)
	}
	parent, err := get(root, path[:len(path)-1])
	if err != nil {
		return nil, nil, err
	}
	last := path[len(path)-1]
	switch p := parent.(type) {
	case map[string]any:
		v, ok := p[last]
		if !ok {
			return nil, nil, fmt.Errorf("%w: /%s does not exist", ErrInvalid, strings.Join(path, "/"))
		}
		delete(p, last)
		return root, v, nil
	case []any:
		i, err := index(last, len(p), false)
		if err != nil {
			return nil, nil, err
		}
		v := p[i]
		shrunk := append(p[:i:i], p[i+1:]...)
		r, err := setAt(root, path[:len(path)-1], shrunk)
		return r, v, err
	}
	return nil, nil, fmt.Errorf("%w: parent of /%s is not an object or array", ErrInvalid, strings.Join(path, "/"))
}

// setAt replaces the value at path (arrays change identity when resized).
func setAt(root any, path []string, v any) (any, error) {
	if len(path) == 0 {
		return v, nil
	}
	parent, err := get(root, path[:len(path)-1])
	if err != nil {
		return nil, err
	}
	last := path[len(path)-1]
	switch p := parent.(type) {
	case map[string]any:
		p[last] = v
	case []any:
		i, err := index(last, len(p), false)
		if err != nil {
			return nil, err
		}
		p[i] = v
	}
	return root, nil
}

func deepCopy(v any) any {
	var out any
	_ = json.Unmarshal([]byte(mustJSON(v)), &out)
	return out
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
