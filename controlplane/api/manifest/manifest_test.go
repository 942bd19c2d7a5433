package manifest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// exampleFiles: the repository's example manifests (examples/ at the
// repository root) and testdata/good, more Kubernetes manifests.
func exampleFiles(t testing.TB) []string {
	t.Helper()
	var files []string
	for _, pattern := range []string{"../../../examples/*.yaml", "testdata/good/*.yaml"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if ex, _ := filepath.Glob("../../../examples/*.yaml"); len(ex) < 4 || len(files) < len(ex)+2 {
		t.Fatalf("found only %d example manifests: %v", len(files), files)
	}
	return files
}

// splitDocs splits a YAML stream into per-document JSON trees via
// sigs.k8s.io/yaml, as Kubernetes reads them.
func kubeJSONDocs(t *testing.T, data []byte) []any {
	t.Helper()
	var out []any
	for _, doc := range docSeparator.Split(string(data), -1) {
		js, err := sigsyaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		var tree any
		if err := json.Unmarshal(js, &tree); err != nil {
			t.Fatal(err)
		}
		if tree != nil {
			out = append(out, tree)
		}
	}
	return out
}

func TestExamplesDecodeUnchangedValidateAndRoundTrip(t *testing.T) {
	dec := NewDecoder(kinds.NewRegistry())
	for _, f := range exampleFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			docs, err := dec.Decode(f, data)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			want := kubeJSONDocs(t, data)
			if len(docs) != len(want) {
				t.Fatalf("decoded %d documents, Kubernetes sees %d", len(docs), len(want))
			}
			for i, d := range docs {
				// Unchanged: encoding what we decoded gives back exactly the
				// JSON Kubernetes reads from the file (numbers stay numbers).
				js, err := MarshalJSON(d.Object)
				if err != nil {
					t.Fatal(err)
				}
				var got any
				if err := json.Unmarshal(js, &got); err != nil {
					t.Fatal(err)
				}
				if !sameAsKubernetes(got, want[i]) {
					t.Errorf("document %d changed in decoding:\n got %s\nwant %s", i, js, mustJSON(want[i]))
				}
				if err := d.Validate(f); err != nil {
					t.Errorf("document %d invalid: %v", i, err)
				}
				// Defaulted objects still validate and round-trip through YAML and JSON.
				obj := proto.Clone(d.Object).(kinds.Object)
				d.Kind.Default(obj)
				if errs := d.Kind.Validate(obj); len(errs) > 0 {
					t.Errorf("document %d invalid after defaults: %v", i, errs)
				}
				for _, o := range []kinds.Object{d.Object, obj} {
					y, err := MarshalYAML(o)
					if err != nil {
						t.Fatal(err)
					}
					back, err := dec.DecodeOne("roundtrip", y)
					if err != nil {
						t.Fatalf("re-decode of encoded YAML: %v\n%s", err, y)
					}
					if !proto.Equal(back.Object, o) {
						t.Errorf("YAML round trip changed the object:\n%s", y)
					}
					j, _ := MarshalJSONIndent(o)
					back2 := d.Kind.New()
					if err := UnmarshalJSON(j, back2); err != nil || !proto.Equal(back2, o) {
						t.Errorf("JSON round trip failed (%v):\n%s", err, j)
					}
				}
			}
		})
	}
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// sameAsKubernetes compares our encoding with the JSON Kubernetes reads,
// allowing what Kubernetes itself normalizes: null fields are unset, and a
// quantity given as a number (cpu: 8) is stored as the string "8".
func sameAsKubernetes(got, want any) bool {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return false
		}
		n := 0
		for k, wv := range w {
			if wv == nil {
				continue
			}
			n++
			if !sameAsKubernetes(g[k], wv) {
				return false
			}
		}
		return n == len(g)
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !sameAsKubernetes(g[i], w[i]) {
				return false
			}
		}
		return true
	case float64:
		if s, ok := got.(string); ok {
			return s == strconv.FormatFloat(w, 'f', -1, 64)
		}
	}
	return reflect.DeepEqual(got, want)
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// badCase reads the want-path / want-line header of a corpus file.
func badCase(t *testing.T, f string) (path string, line int) {
	t.Helper()
	file, err := os.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		l := sc.Text()
		if v, ok := strings.CutPrefix(l, "# want-path: "); ok {
			path = v
		}
		if v, ok := strings.CutPrefix(l, "# want-line: "); ok {
			line, _ = strconv.Atoi(v)
		}
	}
	if path == "" || line == 0 {
		t.Fatalf("%s: missing # want-path / # want-line header", f)
	}
	return path, line
}

// TestBadManifests: each file in testdata/bad is rejected — by the decoder
// or by validation — with a problem at the expected field path and line.
func TestBadManifests(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) < 30 {
		t.Fatalf("corpus has %d bad manifests, want at least 30", len(files))
	}
	dec := NewDecoder(kinds.NewRegistry())
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			wantPath, wantLine := badCase(t, f)
			data, _ := os.ReadFile(f)
			var problems []Problem
			docs, err := dec.Decode(f, data)
			if err != nil {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("decode error %v does not wrap ErrInvalid", err)
				}
				problems = FieldErrors(err)
			}
			for _, d := range docs {
				problems = append(problems, FieldErrors(d.Validate(f))...)
			}
			if len(problems) == 0 {
				t.Fatalf("accepted; want an error at %s (line %d)", wantPath, wantLine)
			}
			for _, p := range problems {
				if p.Path == wantPath && p.Line == wantLine {
					t.Logf("%s", p)
					return
				}
			}
			t.Errorf("want a problem at %s line %d, got:\n%s", wantPath, wantLine, (&Error{Source: f, Problems: problems}).Error())
		})
	}
}

func TestRetiredAPIVersionSaysWhatToUse(t *testing.T) {
	dec := NewDecoder(kinds.NewRegistry())
	_, err := dec.Decode("d.yaml", []byte("apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata:\n  name: web\n"))
	if err == nil || !strings.Contains(err.Error(), `use apiVersion "apps/v1"`) || !strings.Contains(err.Error(), "d.yaml:1:") {
		t.Fatalf("error %v; want file:line and the apiVersion to use", err)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Error("error must wrap ErrInvalid")
	}
}

func TestIntOrStringAndQuantityNormalization(t *testing.T) {
	dec := NewDecoder(kinds.NewRegistry())
	doc, err := dec.DecodeOne("x", []byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"a"},
 "spec":{"selector":{"matchLabels":{"a":"b"}},"strategy":{"rollingUpdate":{"maxSurge":1,"maxUnavailable":"10%"}},
 "template":{"metadata":{"labels":{"a":"b"}},"spec":{"terminationGracePeriodSeconds":5,"containers":[{"name":"c","image":"i",
 "resources":{"limits":{"cpu":1,"memory":"1Gi"},"requests":{"cpu":0.25}},
 "readinessProbe":{"tcpSocket":{"port":"http"}}}]}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	d := doc.Object.(*apiv1.Deployment)
	ru := d.Spec.Strategy.RollingUpdate
	if ru.MaxSurge != "1" || ru.MaxUnavailable != "10%" {
		t.Errorf("rollingUpdate = %q/%q", ru.MaxSurge, ru.MaxUnavailable)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.Resources.Limits["cpu"] != "1" || c.Resources.Requests["cpu"] != "0.25" || c.ReadinessProbe.TcpSocket.Port != "http" {
		t.Errorf("resources/probe = %v %v %q", c.Resources.Limits, c.Resources.Requests, c.ReadinessProbe.TcpSocket.Port)
	}
	js, _ := MarshalJSON(d)
	for _, want := range []string{`"maxSurge":1`, `"maxUnavailable":"10%"`, `"terminationGracePeriodSeconds":5`, `"port":"http"`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("encoded JSON lacks %s: %s", want, js)
		}
	}
}

func TestMultiDocumentLinesAndList(t *testing.T) {
	dec := NewDecoder(kinds.NewRegistry())
	src := "# comment\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\n" +
		"apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: c, namespace: a}\n  data: {k: v}\n"
	docs, err := dec.Decode("m.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 || docs[0].Kind.Name != "Namespace" || docs[1].Kind.Name != "ConfigMap" {
		t.Fatalf("docs = %v", docs)
	}
	if docs[0].Line != 3 || docs[1].Line != 11 {
		t.Errorf("document lines %d, %d; want 3, 11", docs[0].Line, docs[1].Line)
	}
	if _, err := dec.Decode("bad.yaml", []byte("a: [1, 2\n")); err == nil || !strings.Contains(err.Error(), "YAML syntax") {
		t.Errorf("syntax error not reported: %v", err)
	}
}

func TestMarshalList(t *testing.T) {
	out, err := MarshalList([]kinds.Object{&apiv1.Namespace{ApiVersion: "v1", Kind: "Namespace", Metadata: &apiv1.ObjectMeta{Name: "a"}}}, "7", false)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := NewDecoder(kinds.NewRegistry()).Decode("list", out)
	if err != nil || len(docs) != 1 || docs[0].Object.GetMetadata().GetName() != "a" {
		t.Fatalf("list did not decode back: %v\n%s", err, out)
	}
}

func TestHostileAliasesAreBounded(t *testing.T) {
	dec := NewDecoder(kinds.NewRegistry())
	recursive := "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec: &s\n  template:\n    spec: *s\n"
	if _, err := dec.Decode("r", []byte(recursive)); err == nil {
		t.Error("recursive alias accepted")
	}
	bomb := "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers: &c0 [{name: a, image: b}]\n"
	prev := "c0"
	for i := 1; i < 30; i++ {
		bomb += fmt.Sprintf("  x%d: &c%d [*%s, *%s]\n", i, i, prev, prev)
		prev = fmt.Sprintf("c%d", i)
	}
	if _, err := dec.Decode("b", []byte(bomb)); err == nil {
		t.Error("alias bomb with unknown fields accepted")
	}
}
