package manifest

import (
	"testing"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// The NetworkPolicy example of the Kubernetes documentation
// (service/networking/networkpolicy.yaml) decodes, defaults and validates.
func TestDecodeKubernetesNetworkPolicyExample(t *testing.T) {
	const doc = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
  - Ingress
  - Egress
  ingress:
  - from:
    - ipBlock:
        cidr: 172.17.0.0/16
        except:
        - 172.17.1.0/24
    - namespaceSelector:
        matchLabels:
          project: myproject
    - podSelector:
        matchLabels:
          role: frontend
    ports:
    - protocol: TCP
      port: 6379
  egress:
  - to:
    - ipBlock:
        cidr: 10.0.0.0/24
    ports:
    - protocol: TCP
      port: 5978
`
	d, err := NewDecoder(kinds.NewRegistry()).DecodeOne("networkpolicy.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	np, ok := d.Object.(*apiv1.NetworkPolicy)
	if !ok {
		t.Fatalf("decoded %T", d.Object)
	}
	d.Kind.Default(np)
	if errs := d.Kind.Validate(np); len(errs) > 0 {
		t.Fatalf("validation: %v", errs)
	}
	in := np.GetSpec().GetIngress()[0]
	if got := in.GetPorts()[0].GetPort(); got != "6379" || len(in.GetFrom()) != 3 || in.GetFrom()[0].GetIpBlock().GetExcept()[0] != "172.17.1.0/24" {
		t.Fatalf("decoded %v", np.GetSpec())
	}
	bad := []byte(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad, namespace: default}
spec:
  ingress:
  - from:
    - ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}
`)
	d, err = NewDecoder(kinds.NewRegistry()).DecodeOne("bad.yaml", bad)
	if err != nil {
		t.Fatal(err)
	}
	d.Kind.Default(d.Object)
	if errs := d.Kind.Validate(d.Object); len(errs) == 0 || errs[0].Path != "spec.ingress[0].from[0].ipBlock.except[0]" {
		t.Fatalf("errors %v, want one naming spec.ingress[0].from[0].ipBlock.except[0]", errs)
	}
}
