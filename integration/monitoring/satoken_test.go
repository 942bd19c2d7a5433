package monitoring_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/agent/runtime/runtimetest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// tokenTimes reads a service account token's iat and exp claims.
func tokenTimes(tok string) (iat, exp time.Time, err error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return iat, exp, fmt.Errorf("token has %d parts, want 3", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return iat, exp, err
	}
	var c struct{ Iat, Exp int64 }
	if err := json.Unmarshal(b, &c); err != nil {
		return iat, exp, err
	}
	return time.Unix(c.Iat, 0), time.Unix(c.Exp, 0), nil
}

// TestServiceAccountTokenIsRefreshedInThePod (root): a real cluster (a
// control node minting tokens, lowered to a 10 s minimum lifetime; a
// worker whose agent runs real containers and refreshes volumes every
// second). A pod projects a 20 s service account token and copies the file
// it sees out through a hostPath, twice a second. The token file inside the
// pod is replaced by a new token after 80 % of the old one's lifetime and
// before it expires; the new token is accepted by the API (listing pods as
// system:serviceaccount:default:default, bound to view); once the old
// token's expiry has passed, the API refuses it (Unauthenticated) and still
// accepts the new one. The control node refuses a lifetime under its
// minimum.
func TestServiceAccountTokenIsRefreshedInThePod(t *testing.T) {
	runtimetest.RequireRoot(t)
	const lifetime = 20
	c := startClusterWith(t, 1, clusterOptions{minTokenLifetime: 10 * time.Second, volumeRefresh: time.Second})
	img := c.env.Registry.BusyboxImage(t, "busybox", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	testutil.WaitFor(t, 90*time.Second, "worker w1 Ready with its pod range", func() bool {
		n, err := client.Get[*apiv1.Node](ctx, c.admin, "", "w1")
		if err != nil || n.GetSpec().GetPodCIDR() == "" {
			return false
		}
		for _, cond := range n.GetStatus().GetConditions() {
			if cond.GetType() == "Ready" && cond.GetStatus() == "True" {
				return true
			}
		}
		return false
	})
	rb := &apiv1.RoleBinding{ApiVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding",
		Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "default-view"},
		RoleRef:  &apiv1.RoleRef{ApiGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "view"},
		Subjects: []*apiv1.Subject{{Kind: "ServiceAccount", Name: "default", Namespace: "default"}}}
	if _, err := client.Create(ctx, c.admin, rb); err != nil {
		t.Fatal(err)
	}

	out := t.TempDir()
	no := false
	exp := int64(lifetime)
	dirType := "Directory"
	pod := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "tokens"},
		Spec: &apiv1.PodSpec{AutomountServiceAccountToken: &no, TerminationGracePeriodSeconds: client.Int64(1),
			Containers: []*apiv1.Container{{Name: "copy", Image: img,
				Command:      []string{"sh", "-c", "while :; do cat /var/run/secrets/tokens/token > /out/t.tmp && mv /out/t.tmp /out/token; sleep 0.5; done"},
				VolumeMounts: []*apiv1.VolumeMount{{Name: "tok", MountPath: "/var/run/secrets/tokens", ReadOnly: true}, {Name: "out", MountPath: "/out"}}}},
			Volumes: []*apiv1.Volume{
				{Name: "tok", Projected: &apiv1.ProjectedVolumeSource{Sources: []*apiv1.VolumeProjection{
					{ServiceAccountToken: &apiv1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: &exp}}}}},
				{Name: "out", HostPath: &apiv1.HostPathVolumeSource{Path: out, Type: &dirType}}}}}
	if _, err := client.Create(ctx, c.admin, pod); err != nil {
		t.Fatal(err)
	}
	inPod := func() string {
		b, _ := os.ReadFile(filepath.Join(out, "token"))
		return strings.TrimSpace(string(b))
	}
	var old string
	testutil.WaitFor(t, 90*time.Second, "the pod's token file copied out", func() bool {
		old = inPod()
		return old != ""
	})
	oldIat, oldExp, err := tokenTimes(old)
	if err != nil {
		t.Fatal(err)
	}
	if d := oldExp.Sub(oldIat); d != lifetime*time.Second {
		t.Fatalf("token lifetime %s, want %ds", d, lifetime)
	}
	// A client calling the API with a token, as a program in the pod does.
	caller := func(tok string) *client.Client {
		f := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(f, []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
		cl, err := client.NewFromConfig(&client.Config{Servers: []string{fmt.Sprintf("127.0.0.1:%d", c.controls[0].apiPort)},
			CertificateAuthorityData: c.adminCfg.CertificateAuthorityData, TokenFile: f})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		return cl
	}
	listPods := func(cl *client.Client) error {
		_, _, err := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "default"})
		return err
	}
	oldClient := caller(old)
	if err := listPods(oldClient); err != nil {
		t.Fatalf("the pod's first token: %v, want it accepted", err)
	}

	var fresh string
	testutil.WaitFor(t, 2*lifetime*time.Second, "the token file in the pod replaced", func() bool {
		fresh = inPod()
		return fresh != old
	})
	replacedAt := time.Now()
	t.Logf("token replaced %s after it was minted (lifetime %ds, renewal due at 80%%: %s)",
		replacedAt.Sub(oldIat).Round(100*time.Millisecond), lifetime, time.Duration(lifetime*0.8*float64(time.Second)))
	if !replacedAt.Before(oldExp) {
		t.Fatalf("token replaced at %s, after the old one expired at %s", replacedAt.Format(time.RFC3339), oldExp.Format(time.RFC3339))
	}
	if renewal := oldIat.Add(time.Duration(lifetime * 0.8 * float64(time.Second))); replacedAt.Before(renewal.Add(-time.Second)) {
		t.Errorf("token replaced at %s, before 80%% of its lifetime (%s)", replacedAt.Format(time.RFC3339), renewal.Format(time.RFC3339))
	}
	freshIat, freshExp, err := tokenTimes(fresh)
	if err != nil || !freshIat.After(oldIat) || !freshExp.After(oldExp) {
		t.Fatalf("new token: iat %s exp %s (%v), want both later than the old one's", freshIat, freshExp, err)
	}
	freshClient := caller(fresh)
	if err := listPods(freshClient); err != nil {
		t.Fatalf("the new token: %v, want it accepted", err)
	}
	// The old token's expiry passes: refused; the new one still works.
	testutil.WaitFor(t, time.Until(oldExp)+10*time.Second, "the old token refused after its expiry", func() bool {
		return status.Code(listPods(oldClient)) == codes.Unauthenticated
	})
	if time.Now().Before(oldExp) {
		t.Errorf("the old token was refused before its expiry %s", oldExp.Format(time.RFC3339))
	}
	if err := listPods(freshClient); err != nil {
		t.Fatalf("the new token after the old one expired: %v, want it accepted", err)
	}
	// Below the control node's minimum: no token, the pod does not start.
	short := int64(5)
	bad := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "short-token"},
		Spec: &apiv1.PodSpec{AutomountServiceAccountToken: &no, Containers: []*apiv1.Container{{Name: "c", Image: img, Command: []string{"sleep", "60"},
			VolumeMounts: []*apiv1.VolumeMount{{Name: "tok", MountPath: "/t"}}}},
			Volumes: []*apiv1.Volume{{Name: "tok", Projected: &apiv1.ProjectedVolumeSource{Sources: []*apiv1.VolumeProjection{
				{ServiceAccountToken: &apiv1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: &short}}}}}}}}
	if _, err := client.Create(ctx, c.admin, bad); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "the pod with a 5 s token refused by the token minter (an event saying so)", func() bool {
		evs, _, err := client.List[*apiv1.Event](ctx, c.admin, client.ListOptions{Namespace: "default"})
		if err != nil {
			return false
		}
		for _, e := range evs {
			if e.GetInvolvedObject().GetName() == "short-token" && strings.Contains(e.GetMessage(), "expirationSeconds 5: must be between 10") {
				return true
			}
		}
		return false
	})
}
