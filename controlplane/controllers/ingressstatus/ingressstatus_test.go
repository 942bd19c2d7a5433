package ingressstatus_test

import (
	"context"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

func ingress(name string, class *string) *apiv1.Ingress {
	return &apiv1.Ingress{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: name}, Spec: &apiv1.IngressSpec{
		IngressClassName: class,
		DefaultBackend: &apiv1.IngressBackend{Service: &apiv1.IngressServiceBackend{Name: "web",
			Port: &apiv1.ServiceBackendPort{Number: 80}}}}}
}

// The leader fills status.loadBalancer.ingress of built-in-class
// Ingresses with the Ready nodes' InternalIPs, and leaves other classes'
// alone; the IngressClass skiff exists, the default class.
func TestStatusHasReadyNodeIPs(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: 2, Loops: []string{"ingressstatus"}})
	cl := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	other := "nginx"
	if _, err := client.Create(ctx, cl, ingress("theirs", &other)); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Create(ctx, cl, ingress("ours", nil)); err != nil {
		t.Fatal(err)
	}
	var ips []string
	testutil.WaitFor(t, 30*time.Second, "two node IPs in the status of Ingress ours", func() bool {
		in, err := client.Get[*apiv1.Ingress](ctx, cl, "default", "ours")
		if err != nil {
			return false
		}
		ips = ips[:0]
		for _, l := range in.GetStatus().GetLoadBalancer().GetIngress() {
			ips = append(ips, l.GetIp())
		}
		return len(ips) == 2 && ips[0] != "" && ips[0] != ips[1]
	})
	class, err := client.Get[*apiv1.IngressClass](ctx, cl, "", "skiff")
	if err != nil {
		t.Fatalf("the built-in IngressClass: %v", err)
	}
	if class.GetSpec().GetController() != "skiff.dev/ingress" || class.GetMetadata().GetAnnotations()["ingressclass.kubernetes.io/is-default-class"] != "true" {
		t.Errorf("IngressClass skiff = %v, want controller skiff.dev/ingress, the default class", class)
	}
	in, err := client.Get[*apiv1.Ingress](ctx, cl, "default", "theirs")
	if err != nil {
		t.Fatal(err)
	}
	if got := in.GetStatus().GetLoadBalancer().GetIngress(); len(got) != 0 {
		t.Errorf("class nginx Ingress got status %v, want none (not ours)", got)
	}
}
