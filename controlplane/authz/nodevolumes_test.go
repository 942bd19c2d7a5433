package authz

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
)

// boundVolume is a static volume bound to claim ns/name.
func boundVolume(name, ns, claim string) *apiv1.PersistentVolume {
	return &apiv1.PersistentVolume{Metadata: &apiv1.ObjectMeta{Name: name},
		Spec: &apiv1.PersistentVolumeSpec{ClaimRef: &apiv1.ObjectReference{Namespace: ns, Name: claim, Uid: "u1"}}}
}

// provisioned is a built-in local volume made on node, being deleted when
// deleting.
func provisioned(name, node string, deleting bool) *apiv1.PersistentVolume {
	pv := boundVolume(name, "shop", "gone")
	pv.Metadata.Annotations = map[string]string{"pv.kubernetes.io/provisioned-by": "skiff.io/local", kinds.SelectedNodeAnnotation: node}
	pv.Metadata.Finalizers = []string{kinds.PVProtectionFinalizer, kinds.ProvisionerFinalizer}
	if deleting {
		pv.Metadata.DeletionTimestamp = "2026-01-01T00:00:00Z"
	}
	return pv
}

// A node reads a volume only when a pod bound to it uses the volume's
// claim, or when the volume was provisioned on it; it updates only its own
// provisioned volume being deleted, only to drop the provisioner's
// finalizer. Another node, a viewer and a user are refused.
func TestNodeVolumes(t *testing.T) {
	a := New(testGraph)
	ctx := context.Background()
	get := func(id Request, pv *apiv1.PersistentVolume) error {
		id.Verb, id.Kind, id.Name, id.Stored = VerbGet, "PersistentVolume", pv.GetMetadata().GetName(), pv
		return a.Authorize(ctx, id)
	}
	reads := []struct {
		name string
		who  Request
		pv   *apiv1.PersistentVolume
		deny string // "" allowed, else a part of the message
	}{
		{"node gets the volume of its pod's claim", Request{Identity: w1}, boundVolume("pv-data", "shop", "data"), ""},
		{"other node gets the volume of w1's pod's claim", Request{Identity: w2}, boundVolume("pv-data", "shop", "data"),
			`no relationship found between node "w2"`},
		{"node gets the volume of a claim in another namespace", Request{Identity: w1}, boundVolume("pv-x", "other", "data"),
			`no relationship found between node "w1"`},
		{"node gets an unbound volume", Request{Identity: w1}, &apiv1.PersistentVolume{Metadata: &apiv1.ObjectMeta{Name: "free"}},
			`no relationship found between node "w1"`},
		{"node gets a volume provisioned on it", Request{Identity: w1}, provisioned("pvc-1", "w1", true), ""},
		{"other node gets a volume provisioned on w1", Request{Identity: w2}, provisioned("pvc-1", "w1", true),
			`no relationship found between node "w2"`},
		{"graph cannot tell", Request{Identity: w1}, boundVolume("pv-b", "shop", "broken"), "cannot tell"},
	}
	for _, c := range reads {
		err := get(c.who, c.pv)
		switch {
		case c.deny == "" && err != nil:
			t.Errorf("%s: denied: %v", c.name, err)
		case c.deny != "" && (!errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), c.deny)):
			t.Errorf("%s: %v, want forbidden with %q", c.name, err, c.deny)
		}
	}
	if err := a.Authorize(ctx, Request{Identity: w1, Verb: VerbWatch, Kind: "PersistentVolume", Name: "pvc-1", Stored: provisioned("pvc-1", "w1", true)}); !errors.Is(err, ErrForbidden) {
		t.Errorf("node watches its provisioned volume by name: %v, want forbidden", err)
	}
	// A name that is not stored is refused in the same words as another
	// node's volume: a node cannot tell which names exist.
	unrelated := get(Request{Identity: w2}, provisioned("pvc-1", "w1", true))
	missing := a.Authorize(ctx, Request{Identity: w2, Verb: VerbGet, Kind: "PersistentVolume", Name: "pvc-1"})
	if !errors.Is(missing, ErrForbidden) || unrelated == nil || missing.Error() != unrelated.Error() {
		t.Errorf("node gets a volume that does not exist: %v; another node's: %v; want the same refusal", missing, unrelated)
	}
	for _, verb := range []string{VerbUpdate, VerbPatch, VerbDelete} {
		missing := a.Authorize(ctx, Request{Identity: w2, Verb: verb, Kind: "PersistentVolume", Name: "pvc-1"})
		theirs := a.Authorize(ctx, Request{Identity: w2, Verb: verb, Kind: "PersistentVolume", Name: "pvc-1", Stored: provisioned("pvc-1", "w1", true)})
		if !errors.Is(missing, ErrForbidden) || theirs == nil || missing.Error() != theirs.Error() {
			t.Errorf("node %ss a volume that does not exist: %v; another node's: %v; want the same refusal", verb, missing, theirs)
		}
	}
	// List and watch: only its own provisioned volumes, by their label.
	for _, c := range []struct {
		who      Request
		verb     string
		selector string
		allowed  bool
	}{
		{Request{Identity: w1}, VerbList, "skiff.io/local-volume-node=w1", true},
		{Request{Identity: w1}, VerbWatch, "skiff.io/local-volume-node == w1", true},
		{Request{Identity: w1}, VerbList, "", false},
		{Request{Identity: w1}, VerbWatch, "skiff.io/local-volume-node=w2", false},
		{Request{Identity: w1}, VerbList, "skiff.io/local-volume-node!=w2", false},
		{Request{Identity: w1}, VerbList, "skiff.io/local-volume-node in (w1,w2)", false},
		{Request{Identity: w2}, VerbList, "skiff.io/local-volume-node=w1", false},
		{Request{Identity: bob}, VerbList, "skiff.io/local-volume-node=w1", true}, // a viewer lists volumes anyway
	} {
		r := c.who
		r.Verb, r.Kind, r.LabelSelector = c.verb, "PersistentVolume", c.selector
		err := a.Authorize(ctx, r)
		if (err == nil) != c.allowed {
			t.Errorf("%s %s persistentvolumes -l %q: %v, want allowed=%v", r.Identity.User, c.verb, c.selector, err, c.allowed)
		}
	}

	// Writes: the request, then the object to store.
	mine := provisioned("pvc-1", "w1", true)
	dropped := codec.Clone(mine)
	dropped.Metadata.Finalizers = []string{kinds.PVProtectionFinalizer}
	writes := []struct {
		name        string
		req         Request
		obj         *apiv1.PersistentVolume
		deny        string
		denyRequest bool
	}{
		{"node drops the provisioner finalizer of its deleted volume", Request{Identity: w1, Verb: VerbUpdate}, dropped, "", false},
		{"other node drops it", Request{Identity: w2, Verb: VerbUpdate}, dropped, `no relationship found between node "w2"`, true},
		{"viewer drops it", Request{Identity: bob, Verb: VerbUpdate}, dropped, "no RBAC rule allows it", true},
		{"node updates its volume's status", Request{Identity: w1, Verb: VerbUpdate, Subresource: "status"}, dropped, "may only update a volume provisioned on it", true},
		{"node deletes its volume", Request{Identity: w1, Verb: VerbDelete}, dropped, "may only update a volume provisioned on it", true},
		{"node drops pv-protection too", Request{Identity: w1, Verb: VerbUpdate},
			func() *apiv1.PersistentVolume { p := codec.Clone(dropped); p.Metadata.Finalizers = nil; return p }(), "may only drop", false},
		{"node changes the path", Request{Identity: w1, Verb: VerbUpdate},
			func() *apiv1.PersistentVolume {
				p := codec.Clone(dropped)
				p.Spec.Local = &apiv1.LocalVolumeSource{Path: "/etc"}
				return p
			}(), "may only drop", false},
	}
	for _, c := range writes {
		c.req.Kind, c.req.Name, c.req.Stored = "PersistentVolume", "pvc-1", mine
		err := a.Authorize(ctx, c.req)
		if err == nil && !c.denyRequest {
			err = a.AuthorizeObject(ctx, c.req, c.obj)
		}
		switch {
		case c.deny == "" && err != nil:
			t.Errorf("%s: denied: %v", c.name, err)
		case c.deny != "" && (!errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), c.deny)):
			t.Errorf("%s: %v, want forbidden with %q", c.name, err, c.deny)
		}
	}
	// Not being deleted yet, or not provisioned: refused.
	live := provisioned("pvc-1", "w1", false)
	if err := a.Authorize(ctx, Request{Identity: w1, Verb: VerbUpdate, Kind: "PersistentVolume", Name: "pvc-1", Stored: live}); err == nil || !strings.Contains(err.Error(), "not being deleted") {
		t.Errorf("node updates its live volume: %v", err)
	}
	static := boundVolume("pv-data", "shop", "data")
	static.Metadata.DeletionTimestamp = "2026-01-01T00:00:00Z"
	if err := a.Authorize(ctx, Request{Identity: w1, Verb: VerbUpdate, Kind: "PersistentVolume", Name: "pv-data", Stored: static}); err == nil || !strings.Contains(err.Error(), "no relationship found") {
		t.Errorf("node updates a static volume of its pod: %v", err)
	}
}
