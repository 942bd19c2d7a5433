package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/cmd/ctl/internal/cli"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/api/manifest"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/hollow"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// corpusDir holds published manifests, byte for byte (see its SOURCES.md).
const corpusDir = examplesDir + "/corpus"

// corpusFile is one manifest of the corpus and where it goes.
type corpusFile struct {
	path, rel string
	// ns is the namespace the file is applied into (-n) when none of its
	// objects names one: one per folder, as a folder is one application
	// (Elasticsearch's ServiceAccount and its controller are two files),
	// and a file of its own when its objects' names are taken in the
	// folder's namespace already (Istio's bookinfo.yaml and
	// bookinfo-details.yaml both hold "details").
	ns      string
	objects int
	// explicitNS are the namespaces its objects name.
	explicitNS []string
}

func corpusFiles(t *testing.T) []corpusFile {
	t.Helper()
	dec := manifest.NewDecoder(kinds.NewRegistry())
	var out []corpusFile
	type space struct {
		name  string
		taken map[string]bool
	}
	spaces := map[string][]*space{} // by folder
	folders := 0
	err := filepath.WalkDir(corpusDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(corpusDir, path)
		if d.IsDir() {
			if rel == "pending" {
				return filepath.SkipDir
			}
			return nil
		}
		if ext := filepath.Ext(path); ext != ".yaml" && ext != ".yml" && ext != ".json" {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		docs, err := dec.Decode(rel, data)
		if err != nil {
			t.Errorf("corpus file does not decode: %v", err)
			return nil
		}
		f := corpusFile{path: path, rel: rel, objects: len(docs)}
		var names []string
		explicit := false
		for _, d := range docs {
			if ns := d.Object.GetMetadata().GetNamespace(); d.Kind.Namespaced && ns != "" {
				explicit = true
				f.explicitNS = append(f.explicitNS, ns)
			}
			if d.Kind.Namespaced {
				names = append(names, d.Kind.Name+"/"+d.Object.GetMetadata().GetName())
			}
		}
		if !explicit {
			dir := filepath.Dir(rel)
			if spaces[dir] == nil {
				folders++
			}
			var sp *space
		find:
			for _, cand := range spaces[dir] {
				for _, n := range names {
					if cand.taken[n] {
						continue find
					}
				}
				sp = cand
				break
			}
			if sp == nil {
				sp = &space{name: fmt.Sprintf("corpus-%03d-%d", folders, len(spaces[dir])), taken: map[string]bool{}}
				spaces[dir] = append(spaces[dir], sp)
			}
			for _, n := range names {
				sp.taken[n] = true
			}
			f.ns = sp.name
		}
		out = append(out, f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCorpusAppliesUnchanged: every manifest of examples/corpus (published
// by Kubernetes' examples and documentation, Istio, Google's
// microservices-demo) applies unchanged through `ctl apply` to a cluster of
// 3 control nodes and 5 hollow nodes running every controller; a second
// apply says "unchanged" for every object; the workloads' pods are all
// scheduled and Running and Ready (on hollow nodes: the pods are placed and
// reported running by the hollow agent, no container runs); `delete -f`
// of every file leaves nothing behind.
func TestCorpusAppliesUnchanged(t *testing.T) {
	files := corpusFiles(t)
	if len(files) < 40 {
		t.Fatalf("corpus has %d files, want at least 40", len(files))
	}
	c := cptest.Start(t, cptest.Options{HollowNodes: 5, TuneHollow: func(h *hollow.Config) {
		h.Capacity = map[string]string{"cpu": "64", "memory": "256Gi", "pods": "250"}
	}})
	config, err := c.API.WriteClientConfig(t.TempDir(), "admin")
	if err != nil {
		t.Fatal(err)
	}
	ctl := func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := cli.Main(append([]string{"--config", config}, args...), cli.Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
		return out.String(), errb.String(), code
	}
	cl := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The folders' namespaces, and those the manifests expect to exist
	// (Istio's addons go into istio-system, which installing Istio makes).
	for _, ns := range namespacesOf(files) {
		if !strings.HasPrefix(ns, "corpus-") && !madeByCorpus[ns] {
			if _, err := client.Get[*apiv1.Namespace](ctx, cl, "", ns); err == nil {
				continue
			}
		} else if madeByCorpus[ns] {
			continue
		}
		if _, err := client.Create(ctx, cl, &apiv1.Namespace{Metadata: &apiv1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	// The class the manifests' claims name ("standard": kind's, minikube's
	// and GKE's default class), as a cluster's administrator provides it.
	standard := &apiv1.StorageClass{Metadata: &apiv1.ObjectMeta{Name: "standard"}, Provisioner: kinds.LocalProvisioner,
		VolumeBindingMode: proto.String(kinds.BindingWaitForFirstConsumer)}
	kinds.SetTypeMeta(standard, "storage.k8s.io/v1", "StorageClass")
	if _, err := client.Create(ctx, cl, standard); err != nil {
		t.Fatal(err)
	}
	args := func(verb string, f corpusFile) []string {
		a := []string{verb, "-f", f.path}
		if f.ns != "" {
			a = append(a, "-n", f.ns)
		}
		return a
	}
	lines := func(out string) []string { return strings.Split(strings.TrimSpace(out), "\n") }

	applied := 0
	for _, f := range files {
		out, errs, code := ctl(args("apply", f)...)
		if code != 0 {
			t.Errorf("apply %s: exit %d\n%s%s", f.rel, code, out, errs)
			continue
		}
		for _, l := range lines(out) {
			if !strings.HasSuffix(l, " created") {
				t.Errorf("apply %s: %q, want created", f.rel, l)
			}
		}
		if n := len(lines(out)); n != f.objects {
			t.Errorf("apply %s: %d objects reported, the file has %d", f.rel, n, f.objects)
		}
		applied += len(lines(out))
	}
	// Controllers have had a moment to allocate, default and scale: the
	// re-apply must keep what they set.
	running := waitWorkloadsReady(t, ctx, cl, namespacesOf(files))
	// The serviceaccount controller gave every namespace its default
	// account, which the pods that name none run as.
	for _, ns := range namespacesOf(files) {
		if _, err := client.Get[*apiv1.ServiceAccount](ctx, cl, ns, kinds.DefaultServiceAccount); err != nil {
			t.Errorf("namespace %s has no default ServiceAccount: %v", ns, err)
		}
	}
	unchanged := 0
	for _, f := range files {
		out, errs, code := ctl(args("apply", f)...)
		if code != 0 {
			t.Errorf("re-apply %s: exit %d\n%s%s", f.rel, code, out, errs)
			continue
		}
		for _, l := range lines(out) {
			if strings.HasSuffix(l, " unchanged") {
				unchanged++
			} else {
				t.Errorf("re-apply %s: %q, want unchanged", f.rel, l)
			}
		}
	}
	t.Logf("manifests: files=%d applied=%d unchanged_on_reapply=%d running=%d (3 control nodes, 5 hollow nodes: pods placed by the scheduler and reported Running+Ready by hollow agents; no container runs)",
		len(files), applied, unchanged, running)
	if applied != unchanged {
		t.Errorf("%d objects applied, %d unchanged on re-apply", applied, unchanged)
	}

	for i := len(files) - 1; i >= 0; i-- {
		f := files[i]
		out, errs, code := ctl(args("delete", f)...)
		if code != 0 {
			t.Errorf("delete -f %s: exit %d\n%s%s", f.rel, code, out, errs)
		}
	}
	// The claims StatefulSets made from their volumeClaimTemplates outlive
	// them (as in Kubernetes: their data stays until the user deletes them).
	for _, ns := range namespacesOf(files) {
		claims, _, err := client.List[*apiv1.PersistentVolumeClaim](ctx, cl, client.ListOptions{Namespace: ns})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range claims {
			if _, _, err := cl.Delete(ctx, "PersistentVolumeClaim", ns, c.GetMetadata().GetName(), client.DeleteOptions{}); err != nil && !client.IsNotFound(err) {
				t.Errorf("delete claim %s/%s: %v", ns, c.GetMetadata().GetName(), err)
			}
		}
	}
	var left []string
	if !testutil.Eventually(2*time.Minute, func() bool {
		left = leftovers(ctx, cl, namespacesOf(files))
		return len(left) == 0
	}) {
		t.Fatalf("delete -f left %d objects: %v", len(left), left)
	}
	for _, ns := range []string{"development", "production", "spark-cluster"} {
		testutil.WaitFor(t, time.Minute, "namespace "+ns+" from the corpus deleted", func() bool {
			_, err := client.Get[*apiv1.Namespace](ctx, cl, "", ns)
			return client.IsNotFound(err)
		})
	}
	if _, err := client.Get[*apiv1.PriorityClass](ctx, cl, "", "placeholder"); !client.IsNotFound(err) {
		t.Errorf("PriorityClass placeholder after delete -f: %v", err)
	}
}

// madeByCorpus are the namespaces corpus files create themselves.
var madeByCorpus = map[string]bool{"development": true, "production": true, "spark-cluster": true}

// namespacesOf lists the namespaces the corpus's objects go to.
func namespacesOf(files []corpusFile) []string {
	set := map[string]bool{"default": true}
	for ns := range madeByCorpus {
		set[ns] = true
	}
	for _, f := range files {
		if f.ns != "" {
			set[f.ns] = true
		}
		for _, ns := range f.explicitNS {
			set[ns] = true
		}
	}
	out := make([]string, 0, len(set))
	for ns := range set {
		out = append(out, ns)
	}
	sort.Strings(out)
	return out
}

// waitWorkloadsReady waits until every workload has all the pods it asks
// for and every one of them is Running and Ready; it returns their count.
func waitWorkloadsReady(t *testing.T, ctx context.Context, cl *client.Client, namespaces []string) int {
	t.Helper()
	ready, want, notReady := 0, 0, ""
	testutil.WaitFor(t, 3*time.Minute, "every corpus workload's pods Running and Ready", func() bool {
		ready, want, notReady = 0, 0, ""
		for _, ns := range namespaces {
			w, err := desiredPods(ctx, cl, ns)
			if err != nil {
				return false
			}
			want += w
			pods, _, err := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: ns})
			if err != nil {
				return false
			}
			for _, p := range pods {
				if p.GetStatus().GetPhase() == "Running" && isReady(p) && p.GetMetadata().GetDeletionTimestamp() == "" {
					ready++
				} else if notReady == "" {
					notReady = ns + "/" + p.GetMetadata().GetName() + " " + p.GetStatus().GetPhase()
				}
			}
		}
		return want > 0 && ready == want && notReady == ""
	})
	return ready
}

func isReady(p *apiv1.Pod) bool {
	for _, c := range p.GetStatus().GetConditions() {
		if c.GetType() == "Ready" {
			return c.GetStatus() == "True"
		}
	}
	return false
}

// desiredPods is how many pods the workloads of a namespace ask for.
func desiredPods(ctx context.Context, cl *client.Client, ns string) (int, error) {
	opts := client.ListOptions{Namespace: ns}
	replicas := func(r *int32) int {
		if r == nil {
			return 1
		}
		return int(*r)
	}
	n := 0
	deps, _, err := client.List[*apiv1.Deployment](ctx, cl, opts)
	if err != nil {
		return 0, err
	}
	for _, d := range deps {
		n += replicas(d.GetSpec().Replicas)
	}
	rss, _, err := client.List[*apiv1.ReplicaSet](ctx, cl, opts)
	if err != nil {
		return 0, err
	}
	for _, rs := range rss {
		if len(rs.GetMetadata().GetOwnerReferences()) == 0 {
			n += replicas(rs.GetSpec().Replicas)
		}
	}
	rcs, _, err := client.List[*apiv1.ReplicationController](ctx, cl, opts)
	if err != nil {
		return 0, err
	}
	for _, rc := range rcs {
		n += replicas(rc.GetSpec().Replicas)
	}
	sts, _, err := client.List[*apiv1.StatefulSet](ctx, cl, opts)
	if err != nil {
		return 0, err
	}
	for _, s := range sts {
		n += replicas(s.GetSpec().Replicas)
	}
	dss, _, err := client.List[*apiv1.DaemonSet](ctx, cl, opts)
	if err != nil {
		return 0, err
	}
	for _, ds := range dss {
		if ds.GetStatus().GetObservedGeneration() != ds.GetMetadata().GetGeneration() {
			return 0, fmt.Errorf("daemonset %s not observed yet", ds.GetMetadata().GetName())
		}
		n += int(ds.GetStatus().GetDesiredNumberScheduled())
	}
	jobs, _, err := client.List[*apiv1.Job](ctx, cl, opts)
	if err != nil {
		return 0, err
	}
	for _, j := range jobs {
		// Hollow pods never finish: a Job keeps its parallelism running.
		n += min(replicas(j.GetSpec().Parallelism), replicas(j.GetSpec().Completions))
	}
	pods, _, err := client.List[*apiv1.Pod](ctx, cl, opts)
	if err != nil {
		return 0, err
	}
	for _, p := range pods {
		if len(p.GetMetadata().GetOwnerReferences()) == 0 {
			n++
		}
	}
	return n, nil
}

// leftovers names the objects still in the namespaces, apart from what
// the cluster keeps in every namespace (the default ServiceAccount) and
// Events.
func leftovers(ctx context.Context, cl *client.Client, namespaces []string) []string {
	var left []string
	for _, k := range kinds.NewRegistry().Kinds() {
		if !k.Namespaced || k.Name == "Event" || k.Name == "Lease" {
			continue
		}
		for _, ns := range namespaces {
			envs, _, err := cl.ListEnvelopes(ctx, k.Name, client.ListOptions{Namespace: ns})
			if err != nil {
				left = append(left, fmt.Sprintf("list %s in %s: %v", k.Name, ns, err))
				continue
			}
			for _, env := range envs {
				obj, err := client.Unpack(env)
				if err != nil {
					continue
				}
				name := obj.GetMetadata().GetName()
				if k.Name == "ServiceAccount" && name == kinds.DefaultServiceAccount {
					continue
				}
				if k.Name == "ConfigMap" && name == "kube-root-ca.crt" {
					continue
				}
				if (k.Name == "Service" || k.Name == "Endpoints") && ns == "default" && name == "kubernetes" {
					continue // the apiservice loop's, as in Kubernetes
				}
				left = append(left, k.Name+" "+ns+"/"+name)
			}
		}
	}
	return left
}

// TestCorpusSourcesRecorded: every corpus file, pending ones included, has
// its source in SOURCES.md, and pending.txt names what each pending file
// needs (and only files that exist).
func TestCorpusSourcesRecorded(t *testing.T) {
	sources, err := os.ReadFile(filepath.Join(corpusDir, "SOURCES.md"))
	if err != nil {
		t.Fatal(err)
	}
	pendingList, err := os.ReadFile(filepath.Join(corpusDir, "pending.txt"))
	if err != nil {
		t.Fatal(err)
	}
	pending := map[string]bool{}
	for _, line := range strings.Split(string(pendingList), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, why, ok := strings.Cut(line, "\t")
		if !ok || why == "" {
			t.Errorf("pending.txt line %q: want FILE<TAB>what it needs", line)
		}
		pending[file] = true
		if _, err := os.Stat(filepath.Join(corpusDir, file)); err != nil {
			t.Errorf("pending.txt names %s: %v", file, err)
		}
	}
	n := 0
	err = filepath.WalkDir(corpusDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (filepath.Ext(path) != ".yaml" && filepath.Ext(path) != ".yml" && filepath.Ext(path) != ".json") {
			return err
		}
		rel, _ := filepath.Rel(corpusDir, path)
		n++
		if !strings.Contains(string(sources), "| `"+rel+"` | [") {
			t.Errorf("%s has no source in SOURCES.md", rel)
		}
		if strings.HasPrefix(rel, "pending/") && !pending[rel] {
			t.Errorf("%s is pending but pending.txt does not say what it needs", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 40 {
		t.Fatalf("%d corpus files", n)
	}
}
