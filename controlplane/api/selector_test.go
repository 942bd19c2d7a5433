package api

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

func TestLabelSelector(t *testing.T) {
	labels := map[string]string{"app": "web", "tier": "front", "env": "prod"}
	for sel, want := range map[string]bool{
		"":                             true,
		"app=web":                      true,
		"app==web,tier=front":          true,
		"app!=web":                     false,
		"env in (prod,staging)":        true,
		"env notin (prod)":             false,
		"app,!legacy":                  true,
		"legacy":                       false,
		"tier in (back), app=web":      false,
		"example.com/team!=a,app=web ": true,
	} {
		s, err := ParseLabelSelector(sel)
		if err != nil {
			t.Fatalf("%q: %v", sel, err)
		}
		if got := s.Matches(labels); got != want {
			t.Errorf("%q matches %v: got %v, want %v", sel, labels, got, want)
		}
	}
	for _, bad := range []string{"a=((", "=x", "a in b", ",", "a=b c", "Bad Key=x"} {
		if _, err := ParseLabelSelector(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

func TestFieldSelector(t *testing.T) {
	reg := kinds.NewRegistry()
	k, _ := reg.ForKind("Pod")
	p := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: "a", Namespace: "ns"}, Spec: &apiv1.PodSpec{NodeName: "n1"},
		Status: &apiv1.PodStatus{Phase: "Running"}}
	for sel, want := range map[string]bool{
		"metadata.name=a":                        true,
		"spec.nodeName=n1,status.phase!=Pending": true,
		"spec.nodeName=":                         false,
		"spec.hostNetwork=false":                 true,
		"metadata.namespace==other":              false,
	} {
		s, err := ParseFieldSelector(sel, k)
		if err != nil {
			t.Fatalf("%q: %v", sel, err)
		}
		if got := s.Matches(p); got != want {
			t.Errorf("%q: got %v, want %v", sel, got, want)
		}
	}
	for _, bad := range []string{"spec.nope=1", "spec=1", "spec.containers=x", "metadata.name"} {
		if _, err := ParseFieldSelector(bad, k); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

func TestMergePatchRFC7386(t *testing.T) {
	// Examples from RFC 7386 appendix A.
	cases := []struct{ target, patch, want string }{
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
	}
	for _, c := range cases {
		var target, patch, want any
		json.Unmarshal([]byte(c.target), &target)
		json.Unmarshal([]byte(c.patch), &patch)
		json.Unmarshal([]byte(c.want), &want)
		if got := MergePatch(target, patch); !reflect.DeepEqual(got, want) {
			t.Errorf("merge %s into %s: got %v, want %s", c.patch, c.target, got, c.want)
		}
	}
}

func TestApplyMergeRemovesWhatTheManifestDropped(t *testing.T) {
	last := map[string]any{"metadata": map[string]any{"labels": map[string]any{"a": "1", "b": "2"}}, "spec": map[string]any{"x": 1}}
	live := map[string]any{"metadata": map[string]any{"labels": map[string]any{"a": "1", "b": "2", "c": "3"}}, "spec": map[string]any{"x": 1}, "status": map[string]any{"y": 2}}
	cur := map[string]any{"metadata": map[string]any{"labels": map[string]any{"a": "1"}}}
	got := strategicMerge(live, cur, last)
	want := map[string]any{"metadata": map[string]any{"labels": map[string]any{"a": "1", "c": "3"}}, "status": map[string]any{"y": 2}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
