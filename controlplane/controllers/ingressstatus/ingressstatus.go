package ingressstatus

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// ClassName is the built-in controller's IngressClass.
const ClassName = "skiff"

// Controller is the loop, on ctrlkit.Base.
type Controller struct {
	*ctrlkit.Base
	ingresses, nodes *ctrlkit.Cache
}

// NewLoop is the registry factory ("ingressstatus").
var NewLoop = ctrlkit.Factory("ingressstatus", New)

// New returns the loop.
func New(cfg ctrlkit.Config) *Controller {
	c := &Controller{}
	c.Base = ctrlkit.NewBase("ingressstatus", cfg, c.sync)
	c.ingresses = c.Watch("Ingress", c.EnqueueHandler())
	all := func(client.Object) {
		for _, o := range c.ingresses.List() {
			c.Enqueue(o)
		}
	}
	c.nodes = c.Watch("Node", client.EventHandler{OnAdd: all, OnDelete: all,
		OnUpdate: func(old, cur client.Object) {
			if !slices.Equal(nodeIP(old.(*apiv1.Node)), nodeIP(cur.(*apiv1.Node))) {
				all(cur)
			}
		}})
	c.Go("default ingress class", c.ensureClass)
	return c
}

// ControllerName is the built-in class's spec.controller.
const ControllerName = "skiff.dev/ingress"

// ensureClass creates the IngressClass skiff, marked as the default
// class, when it does not exist (an existing one is left as it is: an
// administrator may have changed its annotation).
func (c *Controller) ensureClass(ctx context.Context) error {
	class := &apiv1.IngressClass{Metadata: &apiv1.ObjectMeta{Name: ClassName,
		Annotations: map[string]string{"ingressclass.kubernetes.io/is-default-class": "true"}},
		Spec: &apiv1.IngressClassSpec{Controller: ControllerName}}
	if _, err := client.Create(ctx, c.Client(), class); err != nil && !client.IsAlreadyExists(err) {
		return fmt.Errorf("create IngressClass %s: %w", ClassName, err)
	}
	return nil
}

// served reports whether the built-in controller serves in.
func served(in *apiv1.Ingress) bool {
	c := in.GetSpec().IngressClassName
	return c == nil || *c == "" || *c == ClassName
}

// nodeIP is a Ready node's InternalIP (none otherwise).
func nodeIP(n *apiv1.Node) []string {
	ready := false
	for _, c := range n.GetStatus().GetConditions() {
		if c.GetType() == "Ready" && c.GetStatus() == "True" {
			ready = true
		}
	}
	if !ready || n.GetSpec().GetUnschedulable() {
		return nil
	}
	for _, a := range n.GetStatus().GetAddresses() {
		if a.GetType() == "InternalIP" {
			return []string{a.GetAddress()}
		}
	}
	return nil
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name := ctrlkit.SplitKey(key)
	o, ok := c.ingresses.Get(ns, name)
	if !ok {
		return nil
	}
	in := o.(*apiv1.Ingress)
	if !served(in) {
		return nil
	}
	var ips []string
	for _, n := range c.nodes.List() {
		ips = append(ips, nodeIP(n.(*apiv1.Node))...)
	}
	sort.Strings(ips)
	want := &apiv1.IngressLoadBalancerStatus{}
	for _, ip := range ips {
		want.Ingress = append(want.Ingress, &apiv1.LoadBalancerIngress{Ip: ip})
	}
	if proto.Equal(want, in.GetStatus().GetLoadBalancer()) ||
		(len(want.Ingress) == 0 && len(in.GetStatus().GetLoadBalancer().GetIngress()) == 0) {
		return nil
	}
	up := proto.Clone(in).(*apiv1.Ingress)
	if up.Status == nil {
		up.Status = &apiv1.IngressStatus{}
	}
	up.Status.LoadBalancer = want
	out, err := client.UpdateStatus(ctx, c.Client(), up)
	if client.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	c.ingresses.Wrote(out)
	return nil
}
