package api

import (
	"context"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
)

// admissionPlugins is the admission chain, registered here in order. A
// write runs the admit step of every plugin that handles it, in this
// order, then the kind's own PrepareForCreate and validation, then the
// plugins' validate steps. Each step reads this node's state (one
// Linearize per attempt, see createEncoded) and adds a compare on what it
// read to the write's transaction: if any of it changes before the write
// commits, the write fails and the whole request is redone. Quota and
// limit checks are therefore exact without locks or a quota controller.
var admissionPlugins = []func(*Server) admissionPlugin{
	newNamespaceLifecycle,      // the namespace exists and is not terminating
	newLimitRanger,             // LimitRange defaults and bounds for containers
	newResourceQuota,           // ResourceQuota charges and refunds
	newPodCIDRs,                // Nodes' pod ranges inside the cluster range and apart
	newServiceAccountAdmission, // pods' service account defaulted and present
	newNamespaceDefaultAccount, // a new namespace's default ServiceAccount, in the same write
	newPriorityAdmission,       // pods' priorityClassName resolved to a priority
	newStorageProtection,       // claims and volumes get their in-use protection finalizer
}

// admissionOp is the kind of write being admitted.
type admissionOp uint8

const (
	opCreate admissionOp = iota
	opUpdate
	opDelete
	numAdmissionOps
)

// admissionRequest is one attempt at a write, as the plugins see it.
type admissionRequest struct {
	op   admissionOp
	kind *kinds.Kind
	// obj is the object to store (create, update) or the stored object
	// being removed (delete). A mutating step that changes it replaces it
	// with its own copy first, so a retry starts from what the client sent.
	obj kinds.Object
	// old is the stored object an update replaces.
	old kinds.Object
	// txn is the write's transaction: plugins add the compares (and the
	// writes, such as a quota's new usage) that make their decision hold.
	txn txnBuilder
}

// admissionPlugin is one step of the chain. It implements admitter,
// validator or both.
type admissionPlugin interface {
	// name identifies the plugin (in tests and when listing the chain).
	name() string
	// handles reports whether op on objects of kind k concerns the plugin.
	// It is asked once per kind and op at start, never per request.
	handles(op admissionOp, k *kinds.Kind) bool
}

// admitter may change the object before the kind validates it.
type admitter interface {
	admit(ctx context.Context, r *admissionRequest) error
}

// validator checks the validated object; it must not change it.
type validator interface {
	validate(ctx context.Context, r *admissionRequest) error
}

// admissionChain is the part of the chain relevant to one kind and op.
type admissionChain struct {
	admit    []admitter
	validate []validator
}

func (c *admissionChain) empty() bool { return c == nil || len(c.admit)+len(c.validate) == 0 }

// admissionChains holds each kind's chain per op, derived once from the
// plugins' handles answers so a request does no relevance tests.
type admissionChains map[*kinds.Kind]*[numAdmissionOps]admissionChain

func newAdmissionChains(reg *kinds.Registry, plugins []admissionPlugin) admissionChains {
	out := admissionChains{}
	for _, k := range reg.Kinds() {
		var per [numAdmissionOps]admissionChain
		for op := admissionOp(0); op < numAdmissionOps; op++ {
			for _, p := range plugins {
				if !p.handles(op, k) {
					continue
				}
				if a, ok := p.(admitter); ok {
					per[op].admit = append(per[op].admit, a)
				}
				if v, ok := p.(validator); ok {
					per[op].validate = append(per[op].validate, v)
				}
			}
		}
		out[k] = &per
	}
	return out
}

// chain returns the chain for op on kind k; nil when nothing handles it.
func (s *Server) chain(k *kinds.Kind, op admissionOp) *admissionChain {
	per := s.admission[k]
	if per == nil {
		return nil
	}
	return &per[op]
}

// runAdmit runs the admit steps of the chain in order.
func (c *admissionChain) runAdmit(ctx context.Context, r *admissionRequest) error {
	if c == nil {
		return nil
	}
	for _, a := range c.admit {
		if err := a.admit(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// runValidate runs the validate steps of the chain in order.
func (c *admissionChain) runValidate(ctx context.Context, r *admissionRequest) error {
	if c == nil {
		return nil
	}
	for _, v := range c.validate {
		if err := v.validate(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// kind returns a built-in kind that must exist.
func (s *Server) kind(name string) *kinds.Kind {
	k, ok := s.reg.ForKind(name)
	if !ok {
		panic("kind " + name + " is not registered")
	}
	return k
}
