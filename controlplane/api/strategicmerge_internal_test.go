package api

import (
	"encoding/json"
	"reflect"
	"testing"
)

func decodeAll(t *testing.T, docs ...string) []map[string]any {
	t.Helper()
	out := make([]map[string]any, len(docs))
	for i, d := range docs {
		if d == "" {
			continue
		}
		if err := json.Unmarshal([]byte(d), &out[i]); err != nil {
			t.Fatalf("%s: %v", d, err)
		}
	}
	return out
}

// TestStrategicMergeKeepsControllerFields: list items merge by key, so a
// Service's allocated nodePort, a port's default protocol and a container a
// webhook added survive a re-apply, while an item the manifest dropped goes.
func TestStrategicMergeKeepsControllerFields(t *testing.T) {
	cases := []struct {
		name                      string
		live, applied, last, want string
	}{
		{"service nodePort and clusterIP survive",
			`{"spec":{"clusterIP":"10.0.0.7","type":"NodePort","ports":[{"port":80,"protocol":"TCP","targetPort":8080,"nodePort":30080}]}}`,
			`{"spec":{"type":"NodePort","ports":[{"port":80,"targetPort":8080}]}}`,
			`{"spec":{"type":"NodePort","ports":[{"port":80,"targetPort":8080}]}}`,
			`{"spec":{"clusterIP":"10.0.0.7","type":"NodePort","ports":[{"port":80,"protocol":"TCP","targetPort":8080,"nodePort":30080}]}}`},
		{"dns 53 tcp and udp are two ports",
			`{"spec":{"ports":[{"port":53,"protocol":"UDP","name":"dns"},{"port":53,"protocol":"TCP","name":"dns-tcp"}]}}`,
			`{"spec":{"ports":[{"port":53,"protocol":"UDP","name":"dns"},{"port":53,"protocol":"TCP","name":"dns-tcp"}]}}`,
			``,
			`{"spec":{"ports":[{"port":53,"protocol":"UDP","name":"dns"},{"port":53,"protocol":"TCP","name":"dns-tcp"}]}}`},
		{"containers by name: an added sidecar stays, a dropped one goes",
			`{"containers":[{"name":"a","image":"a:1","imagePullPolicy":"IfNotPresent"},{"name":"b","image":"b:1"},{"name":"injected","image":"x"}]}`,
			`{"containers":[{"name":"a","image":"a:2"}]}`,
			`{"containers":[{"name":"a","image":"a:1"},{"name":"b","image":"b:1"}]}`,
			`{"containers":[{"name":"a","image":"a:2","imagePullPolicy":"IfNotPresent"},{"name":"injected","image":"x"}]}`},
		{"env by name; a field the manifest dropped inside an item goes",
			`{"env":[{"name":"A","value":"1"},{"name":"B","valueFrom":{"x":1}}]}`,
			`{"env":[{"name":"A"},{"name":"B","valueFrom":{"x":1}}]}`,
			`{"env":[{"name":"A","value":"1"},{"name":"B","valueFrom":{"x":1}}]}`,
			`{"env":[{"name":"A"},{"name":"B","valueFrom":{"x":1}}]}`},
		{"an atomic list is replaced",
			`{"args":["a","b"],"rules":[{"host":"x"}]}`,
			`{"args":["c"],"rules":[{"host":"y"}]}`,
			``,
			`{"args":["c"],"rules":[{"host":"y"}]}`},
	}
	for _, c := range cases {
		d := decodeAll(t, c.live, c.applied, c.last, c.want)
		got := strategicMerge(d[0], d[1], d[2])
		if !reflect.DeepEqual(got, d[3]) {
			gb, _ := json.Marshal(got)
			t.Errorf("%s:\n got %s\nwant %s", c.name, gb, c.want)
		}
	}
}
