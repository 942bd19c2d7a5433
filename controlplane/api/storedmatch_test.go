package api

import (
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// Selecting from stored bytes must agree with selecting from the decoded
// object, for every kind of field a selector can name: strings, bools,
// ints with and without presence, unset messages on the path.
func TestStoredSelectionAgreesWithDecoded(t *testing.T) {
	k, _ := kinds.NewRegistry().ForKind("Pod")
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(vals ...string) string { return vals[rng.IntN(len(vals))] }
	selectors := []string{
		"spec.nodeName=n1", "spec.nodeName!=", "spec.nodeName=", "metadata.name=p1,metadata.namespace=ns",
		"status.phase=Running", "status.phase!=Succeeded,status.phase!=Failed", "spec.hostNetwork=true",
		"spec.hostNetwork=false", "spec.priority=0", "spec.priority=", "spec.priority=-5",
		"spec.activeDeadlineSeconds=30", "spec.enableServiceLinks=true", "metadata.generation=2",
		"spec.securityContext.runAsUser=1000", "spec.securityContext.runAsUser=", "spec.restartPolicy=Always",
		"metadata.resourceVersion=3", // decode fills it in: answered by the decoded object
	}
	var cases int
	for i := 0; i < 300; i++ {
		pod := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: pick("p1", "p2"), Namespace: pick("ns", "other"),
			Generation: int64(rng.IntN(3)), Labels: map[string]string{"app": pick("web", "db")}}}
		if rng.IntN(4) > 0 {
			pod.Spec = &apiv1.PodSpec{NodeName: pick("", "n1", "n2"), HostNetwork: rng.IntN(2) == 0,
				RestartPolicy: pick("", "Always", "Never")}
			if rng.IntN(2) == 0 {
				pod.Spec.Priority = proto.Int32(int32(pick2(rng, 0, -5, 7)))
			}
			if rng.IntN(2) == 0 {
				pod.Spec.ActiveDeadlineSeconds = proto.Int64(int64(pick2(rng, 0, 30)))
			}
			if rng.IntN(2) == 0 {
				pod.Spec.EnableServiceLinks = proto.Bool(rng.IntN(2) == 0)
			}
			if rng.IntN(2) == 0 {
				pod.Spec.SecurityContext = &apiv1.PodSecurityContext{}
				if rng.IntN(2) == 0 {
					pod.Spec.SecurityContext.RunAsUser = proto.Int64(1000)
				}
			}
		}
		if rng.IntN(3) > 0 {
			pod.Status = &apiv1.PodStatus{Phase: pick("", "Running", "Succeeded", "Failed")}
		}
		value, err := encode(pod)
		if err != nil {
			t.Fatal(err)
		}
		if rng.IntN(3) == 0 {
			// A second spec occurrence merges into the first, as in a decoder.
			extra := protowire.AppendTag(nil, 4, protowire.BytesType)
			more, _ := proto.Marshal(&apiv1.PodSpec{NodeName: pick("n2", "n3")})
			value = append(value, protowire.AppendBytes(extra, more)...)
		}
		kv := &storepb.KeyValue{Key: []byte(k.Key("ns", "p")), Value: value, ModRevision: int64(1 + rng.IntN(4))}
		for _, fs := range selectors {
			for _, ls := range []string{"", "app=web", "app!=web"} {
				sel, err := parseSelection(k, ls, fs)
				if err != nil {
					t.Fatalf("%q: %v", fs, err)
				}
				obj, err := decode(k, kv)
				if err != nil {
					t.Fatal(err)
				}
				want := sel.labels.Matches(obj.GetMetadata().GetLabels()) && sel.fields.Matches(obj)
				got, err := sel.matchesStored(&storedView{k: k, kv: kv})
				if err != nil {
					t.Fatalf("%q on %v: %v", fs, obj, err)
				}
				if got != want {
					t.Fatalf("selector %q,%q on %v: stored bytes say %v, decoded object %v", ls, fs, obj, got, want)
				}
				cases++
			}
		}
	}
	if cases == 0 {
		t.Fatal("no cases ran")
	}
}

func pick2(rng *rand.Rand, vals ...int) int { return vals[rng.IntN(len(vals))] }

func TestOnlyStoredFieldsAreReadFromBytes(t *testing.T) {
	k, _ := kinds.NewRegistry().ForKind("Pod")
	for sel, want := range map[string]bool{
		"spec.nodeName=a": true, "metadata.name=a,status.phase=Running": true,
		"metadata.resourceVersion=3": false, "kind=Pod": false, "apiVersion=v1": false,
	} {
		fs, err := ParseFieldSelector(sel, k)
		if err != nil {
			t.Fatal(err)
		}
		if fs.onWire() != want {
			t.Errorf("%q: onWire %v, want %v", sel, fs.onWire(), want)
		}
	}
}

func TestStoredSelectionReportsGarbage(t *testing.T) {
	k, _ := kinds.NewRegistry().ForKind("Pod")
	sel, err := parseSelection(k, "", "spec.nodeName=a")
	if err != nil {
		t.Fatal(err)
	}
	for _, value := range [][]byte{{0x22, 0x05, 0x01}, {0x20, 0x01}} { // truncated spec; spec as a varint
		if _, err := sel.matchesStored(&storedView{k: k, kv: &storepb.KeyValue{Key: []byte("/k"), Value: value}}); err == nil {
			t.Errorf("% x: no error", value)
		}
	}
}
