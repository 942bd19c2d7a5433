package patch

import (
	"encoding/json"
	"fmt"
	"reflect"
)

// mergeKeys are the fields that key list elements in Kubernetes' strategic
// merge, tried in order on the patch's element.
var mergeKeys = []string{"name", "containerPort", "port", "mountPath", "devicePath", "ip", "type", "key", "topologyKey"}

// MergePatch applies an RFC 7386 JSON merge patch.
func MergePatch(doc, patch []byte) ([]byte, error) {
	return mergeDocs(doc, patch, false)
}

// StrategicMerge applies a strategic merge patch (see the package doc).
func StrategicMerge(doc, patch []byte) ([]byte, error) {
	return mergeDocs(doc, patch, true)
}

func mergeDocs(doc, patch []byte, strategic bool) ([]byte, error) {
	var d, p any
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("document: %w", err)
	}
	if err := json.Unmarshal(patch, &p); err != nil {
		return nil, fmt.Errorf("%w: not JSON: %v", ErrInvalid, err)
	}
	if _, ok := p.(map[string]any); !ok {
		return nil, fmt.Errorf("%w: a merge patch is a JSON object", ErrInvalid)
	}
	return json.Marshal(merge(d, p, strategic))
}

func merge(doc, patch any, strategic bool) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	dm, ok := doc.(map[string]any)
	if !ok {
		dm = map[string]any{}
	}
	for k, pv := range pm {
		if pv == nil {
			delete(dm, k)
			continue
		}
		if strategic {
			if pl, ok := pv.([]any); ok {
				if dl, ok := dm[k].([]any); ok {
					if merged, ok := mergeList(dl, pl); ok {
						dm[k] = merged
						continue
					}
				}
			}
		}
		dm[k] = merge(dm[k], pv, strategic)
	}
	return dm
}

// mergeList merges lists of objects by their merge key; ok is false when
// the list is not one (scalars, or elements without a common key): then
// the patch's list replaces the document's, as in a merge patch.
func mergeList(doc, patch []any) ([]any, bool) {
	key := ""
	for _, e := range patch {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, false
		}
		k := keyOf(m)
		if k == "" || (key != "" && k != key) {
			return nil, false
		}
		key = k
	}
	if key == "" {
		return nil, false
	}
	out := append([]any(nil), doc...)
	for _, e := range patch {
		pm := e.(map[string]any)
		idx := -1
		for i, de := range out {
			if dm, ok := de.(map[string]any); ok && fmt.Sprint(dm[key]) == fmt.Sprint(pm[key]) {
				idx = i
				break
			}
		}
		if pm["$patch"] == "delete" {
			if idx >= 0 {
				out = append(out[:idx], out[idx+1:]...)
			}
			continue
		}
		if idx >= 0 {
			out[idx] = merge(out[idx], pm, true)
		} else {
			out = append(out, merge(nil, pm, true))
		}
	}
	return out, true
}

func keyOf(m map[string]any) string {
	for _, k := range mergeKeys {
		if _, ok := m[k]; ok {
			return k
		}
	}
	return ""
}

// CreateMergePatch returns the RFC 7386 merge patch that turns original
// into modified (both JSON objects): changed and added fields with their
// new values, removed ones as null, lists whole.
func CreateMergePatch(original, modified []byte) ([]byte, error) {
	var o, m map[string]any
	if err := json.Unmarshal(original, &o); err != nil {
		return nil, fmt.Errorf("original: %w", err)
	}
	if err := json.Unmarshal(modified, &m); err != nil {
		return nil, fmt.Errorf("modified: %w", err)
	}
	return json.Marshal(diff(o, m))
}

func diff(o, m map[string]any) map[string]any {
	out := map[string]any{}
	for k, ov := range o {
		mv, ok := m[k]
		if !ok {
			out[k] = nil
			continue
		}
		om, oIsMap := ov.(map[string]any)
		mm, mIsMap := mv.(map[string]any)
		if oIsMap && mIsMap {
			if d := diff(om, mm); len(d) > 0 {
				out[k] = d
			}
			continue
		}
		if !reflect.DeepEqual(ov, mv) {
			out[k] = mv
		}
	}
	for k, mv := range m {
		if _, ok := o[k]; !ok {
			out[k] = mv
		}
	}
	return out
}
