package patch

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func equalJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}

func TestJSONPatch(t *testing.T) {
	doc := `{"metadata":{"name":"web","labels":{"a/b":"1"}},"spec":{"replicas":1,"list":[1,2,3]}}`
	for _, tc := range []struct{ name, patch, want string }{
		{"replace", `[{"op":"replace","path":"/spec/replicas","value":3}]`, `{"metadata":{"name":"web","labels":{"a/b":"1"}},"spec":{"replicas":3,"list":[1,2,3]}}`},
		{"add to end", `[{"op":"add","path":"/spec/list/-","value":4}]`, `{"metadata":{"name":"web","labels":{"a/b":"1"}},"spec":{"replicas":1,"list":[1,2,3,4]}}`},
		{"insert", `[{"op":"add","path":"/spec/list/0","value":0}]`, `{"metadata":{"name":"web","labels":{"a/b":"1"}},"spec":{"replicas":1,"list":[0,1,2,3]}}`},
		{"remove escaped", `[{"op":"remove","path":"/metadata/labels/a~1b"}]`, `{"metadata":{"name":"web","labels":{}},"spec":{"replicas":1,"list":[1,2,3]}}`},
		{"remove element", `[{"op":"remove","path":"/spec/list/1"}]`, `{"metadata":{"name":"web","labels":{"a/b":"1"}},"spec":{"replicas":1,"list":[1,3]}}`},
		{"move", `[{"op":"move","from":"/spec/replicas","path":"/spec/count"}]`, `{"metadata":{"name":"web","labels":{"a/b":"1"}},"spec":{"count":1,"list":[1,2,3]}}`},
		{"copy and test", `[{"op":"test","path":"/spec/replicas","value":1},{"op":"copy","from":"/spec/list","path":"/spec/l2"}]`, `{"metadata":{"name":"web","labels":{"a/b":"1"}},"spec":{"replicas":1,"list":[1,2,3],"l2":[1,2,3]}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := JSONPatch([]byte(doc), []byte(tc.patch))
			if err != nil {
				t.Fatal(err)
			}
			equalJSON(t, got, tc.want)
		})
	}
	for _, tc := range []struct {
		patch string
		want  error
	}{
		{`[{"op":"test","path":"/spec/replicas","value":2}]`, ErrTestFailed},
		{`[{"op":"remove","path":"/spec/nope"}]`, ErrInvalid},
		{`[{"op":"add","path":"/spec/list/9","value":1}]`, ErrInvalid},
		{`[{"op":"frob","path":"/spec"}]`, ErrInvalid},
		{`{"op":"add"}`, ErrInvalid},
		{`[{"op":"replace","path":"spec"}]`, ErrInvalid},
	} {
		if _, err := JSONPatch([]byte(doc), []byte(tc.patch)); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.patch, err, tc.want)
		}
	}
}

func TestStrategicMergeByKey(t *testing.T) {
	doc := `{"spec":{"containers":[{"name":"a","image":"x:1","env":[{"name":"K","value":"1"}]},{"name":"b","image":"y:1"}],"args":["1","2"]}}`
	patch := `{"spec":{"containers":[{"name":"a","image":"x:2","env":[{"name":"L","value":"2"}]},{"name":"b","$patch":"delete"},{"name":"c","image":"z"}],"args":["3"]}}`
	got, err := StrategicMerge([]byte(doc), []byte(patch))
	if err != nil {
		t.Fatal(err)
	}
	equalJSON(t, got, `{"spec":{"containers":[{"name":"a","image":"x:2","env":[{"name":"K","value":"1"},{"name":"L","value":"2"}]},{"name":"c","image":"z"}],"args":["3"]}}`)

	merged, err := MergePatch([]byte(doc), []byte(`{"spec":{"containers":[{"name":"c"}],"args":null}}`))
	if err != nil {
		t.Fatal(err)
	}
	equalJSON(t, merged, `{"spec":{"containers":[{"name":"c"}]}}`)
}

func TestCreateMergePatch(t *testing.T) {
	o := `{"a":1,"b":{"c":2,"d":3},"l":[1,2],"gone":true}`
	m := `{"a":1,"b":{"c":5,"d":3},"l":[1],"new":"x"}`
	p, err := CreateMergePatch([]byte(o), []byte(m))
	if err != nil {
		t.Fatal(err)
	}
	equalJSON(t, p, `{"b":{"c":5},"l":[1],"gone":null,"new":"x"}`)
	back, err := MergePatch([]byte(o), p)
	if err != nil {
		t.Fatal(err)
	}
	equalJSON(t, back, m)
}
