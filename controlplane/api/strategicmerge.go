package api

import (
	"encoding/json"
	"fmt"
	"strings"
)

// listMergeKeys names, per list field, the item fields that identify an
// item, where Kubernetes' strategic merge patch merges that list by key
// (patchMergeKey in its API types) instead of replacing it. A list of
// another name, or whose items lack every key field, is replaced whole
// (atomic), as Kubernetes does for lists without a merge key.
//
// Ports carry their protocol in the key: Kubernetes keys a Service's ports
// by port alone, and kubectl then mixes up DNS's 53/TCP and 53/UDP.
var listMergeKeys = map[string][]mergeKey{
	"containers":                {{"name"}},
	"initContainers":            {{"name"}},
	"ephemeralContainers":       {{"name"}},
	"env":                       {{"name"}},
	"volumes":                   {{"name"}},
	"volumeMounts":              {{"mountPath"}},
	"volumeDevices":             {{"devicePath"}},
	"imagePullSecrets":          {{"name"}},
	"hostAliases":               {{"ip"}},
	"ports":                     {{"containerPort", "protocol"}, {"port", "protocol"}},
	"tolerations":               {{"key", "operator", "value", "effect"}},
	"topologySpreadConstraints": {{"topologyKey", "whenUnsatisfiable"}},
	"resourceClaims":            {{"name"}},
	"ownerReferences":           {{"uid"}},
	"conditions":                {{"type"}},
}

// mergeKey is the fields whose values together identify a list item. The
// first field must be present; the others default (protocol: TCP).
type mergeKey []string

var mergeKeyDefaults = map[string]any{"protocol": "TCP"}

// keyOf is the identity of item under key, or "" when the item does not
// have the key's first field.
func (k mergeKey) keyOf(item any) string {
	m, ok := item.(map[string]any)
	if !ok {
		return ""
	}
	if _, ok := m[k[0]]; !ok {
		return ""
	}
	parts := make([]string, len(k))
	for i, f := range k {
		v, ok := m[f]
		if !ok {
			v = mergeKeyDefaults[f]
		}
		b, _ := json.Marshal(v)
		parts[i] = string(b)
	}
	return strings.Join(parts, "\x00")
}

// keyFor picks the merge key of a list named field from the items of the
// manifest (a container's ports have containerPort, a Service's port), or
// nil when the list is atomic.
func keyFor(field string, items []any) mergeKey {
	for _, k := range listMergeKeys[field] {
		all := len(items) > 0
		for _, it := range items {
			if k.keyOf(it) == "" {
				all = false
				break
			}
		}
		if all {
			return k
		}
	}
	return nil
}

// strategicMerge is the three-way merge of kubectl's client-side apply:
// applied is the manifest now, last the manifest applied before (nil if
// none) and live the stored object, all as decoded JSON. Fields applied sets
// win; fields last set and applied no longer sets are removed; fields only
// live has (a controller's nodePort, a default) are kept. Lists named in
// listMergeKeys merge item by item on their key, in the manifest's order
// followed by the live items others added; other lists are replaced.
func strategicMerge(live, applied, last map[string]any) map[string]any {
	out := make(map[string]any, len(live)+len(applied))
	for k, v := range live {
		out[k] = v
	}
	for k := range last {
		if _, ok := applied[k]; !ok {
			delete(out, k)
		}
	}
	for k, av := range applied {
		if av == nil {
			delete(out, k)
			continue
		}
		out[k] = mergeValue(k, out[k], av, last[k])
	}
	return out
}

func mergeValue(field string, live, applied, last any) any {
	switch a := applied.(type) {
	case map[string]any:
		lm, _ := live.(map[string]any)
		pm, _ := last.(map[string]any)
		return strategicMerge(lm, a, pm)
	case []any:
		lv, ok := live.([]any)
		if !ok {
			return a
		}
		key := keyFor(field, a)
		if key == nil {
			return a
		}
		pl, _ := last.([]any)
		return mergeList(key, lv, a, pl)
	}
	return applied
}

// mergeList merges a keyed list: each applied item over the live item of
// its key (three-way with the last applied item of that key); live items
// whose key the last manifest had but this one has not are dropped; live
// items nobody applied stay, after the applied ones.
func mergeList(key mergeKey, live, applied, last []any) []any {
	liveBy := map[string]any{}
	for _, it := range live {
		if k := key.keyOf(it); k != "" {
			liveBy[k] = it
		}
	}
	lastBy := map[string]any{}
	for _, it := range last {
		if k := key.keyOf(it); k != "" {
			lastBy[k] = it
		}
	}
	out := make([]any, 0, len(applied)+len(live))
	seen := map[string]bool{}
	for _, it := range applied {
		k := key.keyOf(it)
		if seen[k] {
			out = append(out, it) // a duplicate key: validation names it
			continue
		}
		seen[k] = true
		am, _ := it.(map[string]any)
		lm, _ := liveBy[k].(map[string]any)
		pm, _ := lastBy[k].(map[string]any)
		out = append(out, strategicMerge(lm, am, pm))
	}
	for _, it := range live {
		k := key.keyOf(it)
		if k == "" || seen[k] {
			continue
		}
		if _, wasApplied := lastBy[k]; wasApplied {
			continue // the manifest dropped it
		}
		out = append(out, it)
	}
	return out
}

// decodeJSONObject decodes a JSON object for merging.
func decodeJSONObject(what string, b []byte) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", what, err)
	}
	return m, nil
}
