package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// continueToken is the opaque List continuation: where the next page starts
// and the revision of the first page. Every later page is read at that
// revision (on whichever node serves it, once that node has applied it), so
// the pages of one List form one snapshot and a watch from its revision
// misses nothing. When the store's history no longer reaches back to it the
// page fails with OutOfRange ("re-list").
type continueToken struct {
	Rev    int64  `json:"rv"`
	After  []byte `json:"after"`
	Prefix string `json:"prefix"`
}

func (c continueToken) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeContinue(s string) (continueToken, error) {
	var c continueToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil {
		return c, fmt.Errorf("%w: continue token %q is not one this server issued", ErrInvalid, s)
	}
	return c, nil
}

// maxListPage bounds one store read while filtering.
const maxListPage = 500

// List implements apiv1.APIServer.
func (s *Server) List(ctx context.Context, req *apiv1.ListRequest) (*apiv1.List, error) {
	k, err := s.lookup(req.GetKind())
	if err != nil {
		return nil, toStatus(err)
	}
	ns := req.GetNamespace()
	if !k.Namespaced {
		ns = ""
	}
	id, _ := IdentityFrom(ctx)
	if err := s.authorizeAttrs(ctx, Attributes{Identity: id, Verb: "list", Kind: k.Name, Namespace: ns, LabelSelector: req.GetLabelSelector()}); err != nil {
		return nil, toStatus(err)
	}
	list, err := s.list(ctx, k, ns, req)
	return list, toStatus(err)
}

func (s *Server) list(ctx context.Context, k *kinds.Kind, ns string, req *apiv1.ListRequest) (*apiv1.List, error) {
	sel, err := parseSelection(k, req.GetLabelSelector(), req.GetFieldSelector())
	if err != nil {
		return nil, err
	}
	if req.GetLimit() < 0 {
		return nil, fmt.Errorf("%w: limit %d is negative", ErrInvalid, req.GetLimit())
	}
	prefix := k.Prefix(ns)
	var tok continueToken
	if req.GetContinue() != "" {
		if tok, err = decodeContinue(req.GetContinue()); err != nil {
			return nil, err
		}
		if tok.Prefix != prefix {
			return nil, fmt.Errorf("%w: continue token belongs to another list", ErrInvalid)
		}
	}
	out := &apiv1.List{ApiVersion: "v1", Kind: "List", Metadata: &apiv1.ListMeta{}}
	after := tok.After
	rev := tok.Rev
	limit := req.GetLimit()
	for {
		page := int64(maxListPage)
		if limit > 0 && sel.empty() {
			page = limit - int64(len(out.Items))
		}
		// The first read is linearizable unless stale; every later store
		// read, of this call or of a continuation, is at its revision.
		resp, err := s.store.Range(ctx, &storepb.RangeRequest{Key: []byte(prefix), Prefix: true, Limit: page,
			ContinueAfter: after, Stale: req.GetStale(), Revision: rev})
		if err != nil {
			if errors.Is(err, consensus.ErrCompacted) {
				return nil, fmt.Errorf("list %s: continue token of revision %d: %w", k.Resource(), rev, ErrTooOld)
			}
			return nil, fmt.Errorf("list %s: %w", k.Resource(), err)
		}
		if rev == 0 {
			rev = resp.Revision
		}
		for i, kv := range resp.Kvs {
			if limit > 0 && int64(len(out.Items)) == limit {
				// Full: the next page starts after the last item taken.
				out.Metadata.Continue = continueToken{Rev: rev, After: resp.Kvs[i-1].Key, Prefix: prefix}.encode()
				out.Metadata.ResourceVersion = formatRev(rev)
				return out, nil
			}
			if !sel.empty() {
				in, err := sel.matchesStored(&storedView{k: k, kv: kv})
				if err != nil {
					return nil, err
				}
				if !in {
					continue
				}
			}
			out.Items = append(out.Items, rawEnvelope(k, kv.Value, kv.ModRevision))
		}
		if !resp.More {
			break
		}
		after = resp.NextKey
		if limit > 0 && int64(len(out.Items)) == limit {
			out.Metadata.Continue = continueToken{Rev: rev, After: after, Prefix: prefix}.encode()
			break
		}
	}
	out.Metadata.ResourceVersion = formatRev(rev)
	return out, nil
}
