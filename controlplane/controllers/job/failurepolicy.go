package job

import (
	"fmt"
	"slices"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Pod failure policy actions (spec.podFailurePolicy.rules[].action).
const (
	ActionFailJob   = "FailJob"
	ActionIgnore    = "Ignore"
	ActionCount     = "Count"
	ActionFailIndex = "FailIndex"
	// ReasonPodFailurePolicy is the Failed condition's reason when a
	// FailJob rule matched, as in Kubernetes.
	ReasonPodFailurePolicy = "PodFailurePolicy"
)

// failureVerdict is what the policy says about one failed pod.
type failureVerdict struct {
	action string // "" when no rule matched: the failure counts
	msg    string // for FailJob: why, naming the pod and rule
}

// judgeFailure applies a Job's pod failure policy to a failed pod: the
// first matching rule decides, as in Kubernetes.
func judgeFailure(policy *apiv1.PodFailurePolicy, p *apiv1.Pod) failureVerdict {
	for i, r := range policy.GetRules() {
		if why, ok := ruleMatches(r, p); ok {
			return failureVerdict{action: r.GetAction(),
				msg: fmt.Sprintf("%s for pod %s/%s matching %s rule at index %d", why, p.GetMetadata().GetNamespace(), p.GetMetadata().GetName(), r.GetAction(), i)}
		}
	}
	return failureVerdict{}
}

func ruleMatches(r *apiv1.PodFailurePolicyRule, p *apiv1.Pod) (string, bool) {
	if req := r.GetOnExitCodes(); req != nil {
		for _, cs := range p.GetStatus().GetContainerStatuses() {
			if req.ContainerName != nil && req.GetContainerName() != cs.GetName() {
				continue
			}
			t := cs.GetState().GetTerminated()
			if t == nil || t.GetExitCode() == 0 {
				continue // a container that succeeded matches no rule
			}
			in := slices.Contains(req.GetValues(), t.GetExitCode())
			if (req.GetOperator() == "In") == in {
				return fmt.Sprintf("Container %s failed with exit code %d", cs.GetName(), t.GetExitCode()), true
			}
		}
	}
	for _, pat := range r.GetOnPodConditions() {
		want := pat.GetStatus()
		if want == "" {
			want = "True"
		}
		for _, c := range p.GetStatus().GetConditions() {
			if c.GetType() == pat.GetType() && c.GetStatus() == want {
				return fmt.Sprintf("Pod has condition %s=%s", c.GetType(), c.GetStatus()), true
			}
		}
	}
	return "", false
}
