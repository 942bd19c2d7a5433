package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/api/manifest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
)

// LastAppliedAnnotation holds the manifest of the last Apply (its
// Kubernetes JSON), so the next Apply can tell which fields the manifest
// stopped setting (and removes them) from fields others set (and keeps them).
const LastAppliedAnnotation = "skiff.io/last-applied-configuration"

// Apply implements apiv1.APIServer: a three-way merge like kubectl's
// client-side apply, done on the server so every client gets it.
//
// The new object is the live one with the manifest merged over it (fields
// the manifest sets win; lists with a merge key — containers, ports, env,
// volumes … — merge item by item, others are replaced) and with the fields
// that were in the last applied manifest but are no longer, removed.
// Status, server-set metadata and fields only other writers set (a
// Service's clusterIP and nodePort) are kept. A dry run validates and
// admits but stores nothing.
func (s *Server) Apply(ctx context.Context, req *apiv1.ApplyRequest) (*apiv1.ApplyResponse, error) {
	obj, k, err := s.unpack(req.GetObject())
	if err != nil {
		return nil, toStatus(err)
	}
	md := kinds.Meta(obj)
	md.Namespace = scope(k, md.Namespace)
	if md.Name == "" {
		return nil, toStatus(invalid(k, "", kinds.FieldErrors{kinds.Required("metadata.name", "apply needs a name")}))
	}
	if err := s.authorize(ctx, "patch", k.Name, "", md.Namespace, md.Name); err != nil {
		return nil, toStatus(err)
	}
	out, result, err := s.apply(ctx, k, obj, req.GetDryRun())
	if err != nil {
		return nil, toStatus(err)
	}
	env, err := s.pack(out)
	if err != nil {
		return nil, toStatus(err)
	}
	return &apiv1.ApplyResponse{Object: env, Result: result}, nil
}

func (s *Server) apply(ctx context.Context, k *kinds.Kind, obj kinds.Object, dryRun bool) (kinds.Object, apiv1.ApplyResponse_Result, error) {
	applied, err := appliedConfig(k, obj)
	if err != nil {
		return nil, 0, err
	}
	md := obj.GetMetadata()
	for attempt := 0; ; attempt++ {
		cur, err := s.get(ctx, k, md.GetNamespace(), md.GetName(), false)
		if err != nil {
			return nil, 0, err
		}
		if cur == nil {
			if err := s.authorize(ctx, "create", k.Name, "", md.GetNamespace(), md.GetName()); err != nil {
				return nil, 0, err
			}
			fresh := codec.Clone(obj)
			kinds.CopyStatus(fresh, k.New())
			setAnnotation(fresh, LastAppliedAnnotation, string(applied))
			out, err := s.create(ctx, k, fresh, dryRun)
			if errors.Is(err, ErrAlreadyExists) && attempt < maxAdmissionRetries {
				continue // created meanwhile: configure it instead
			}
			return out, apiv1.ApplyResponse_CREATED, err
		}
		next, err := threeWayMerge(k, cur.obj, applied)
		if err != nil {
			return nil, 0, err
		}
		kinds.Meta(next).ResourceVersion = cur.obj.GetMetadata().GetResourceVersion()
		out, changed, err := s.update(ctx, k, next, updateOpts{dryRun: dryRun})
		if errors.Is(err, ErrConflict) && attempt < maxAdmissionRetries {
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		if !changed {
			return out, apiv1.ApplyResponse_UNCHANGED, nil
		}
		return out, apiv1.ApplyResponse_CONFIGURED, nil
	}
}

// appliedConfig is the manifest as recorded in the annotation: its
// Kubernetes JSON without status, server-set metadata or the annotation.
func appliedConfig(k *kinds.Kind, obj kinds.Object) ([]byte, error) {
	c := codec.Clone(obj)
	kinds.CopyStatus(c, k.New())
	md := kinds.Meta(c)
	md.ResourceVersion, md.Uid, md.CreationTimestamp, md.Generation = "", "", "", 0
	md.DeletionTimestamp, md.DeletionGracePeriodSeconds = "", nil
	delete(md.Annotations, LastAppliedAnnotation)
	if len(md.Annotations) == 0 {
		md.Annotations = nil
	}
	kinds.SetTypeMeta(c, k.APIVersion(), k.Name)
	b, err := manifest.MarshalJSON(c)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return b, nil
}

// threeWayMerge computes the object Apply writes over live: the strategic
// three-way merge (strategicmerge.go) of the manifest, the one applied last
// (the annotation) and the live object, with the annotation updated.
func threeWayMerge(k *kinds.Kind, live kinds.Object, applied []byte) (kinds.Object, error) {
	cur, err := decodeJSONObject("applied configuration", applied)
	if err != nil {
		return nil, err
	}
	var last map[string]any
	if prev := live.GetMetadata().GetAnnotations()[LastAppliedAnnotation]; prev != "" {
		if last, err = decodeJSONObject("last applied configuration", []byte(prev)); err != nil {
			last = nil // a hand-edited annotation: treat as never applied
		}
	}
	js, err := manifest.MarshalJSON(live)
	if err != nil {
		return nil, err
	}
	liveDoc, err := decodeJSONObject(k.Name+" JSON", js)
	if err != nil {
		return nil, err
	}
	merged := strategicMerge(liveDoc, cur, last)
	md, _ := merged["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		merged["metadata"] = md
	}
	ann, _ := md["annotations"].(map[string]any)
	if ann == nil {
		ann = map[string]any{}
	}
	ann[LastAppliedAnnotation] = string(applied)
	md["annotations"] = ann
	b, err := json.Marshal(merged)
	if err != nil {
		return nil, fmt.Errorf("encode merged %s: %w", k.Name, err)
	}
	next := k.New()
	if err := manifest.UnmarshalJSON(b, next); err != nil {
		return nil, fmt.Errorf("%w: merged object: %s", ErrInvalid, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return next, nil
}

func setAnnotation(obj kinds.Object, key, value string) {
	md := kinds.Meta(obj)
	if md.Annotations == nil {
		md.Annotations = map[string]string{}
	}
	md.Annotations[key] = value
}
