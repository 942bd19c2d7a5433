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
			`its claim shop/data is used by no pod bound to node "w2"`},
		{"node gets the volume of a claim in another namespace", Request{Identity: w1}, boundVolume("pv-x", "other", "data"),
			`its claim other/data is used by no pod bound to node "w1"`},
		{"node gets an unbound volume", Request{Identity: w1}, &apiv1.PersistentVolume{Metadata: &apiv1.ObjectMeta{Name: "free"}},
			"bound to no claim"},
		{"node gets a volume provisioned on it", Request{Identity: w1}, provisioned("pvc-1", "w1", true), ""},
		{"other node gets a volume provisioned on w1", Request{Identity: w2}, provisioned("pvc-1", "w1", true),
			`its claim shop/gone is used by no pod bound to node "w2"`},
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
		t.Errorf("node watches its provisioned volume: %v, want forbidden", err)
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
		{"other node drops it", Request{Identity: w2, Verb: VerbUpdate}, dropped, `provisioned on node "w1"`, true},
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
	if err := a.Authorize(ctx, Request{Identity: w1, Verb: VerbUpdate, Kind: "PersistentVolume", Name: "pv-data", Stored: static}); err == nil || !strings.Contains(err.Error(), "not made by the built-in local provisioner") {
		t.Errorf("node updates a static volume of its pod: %v", err)
	}
}
