package agent

import "testing"

// The pass's decision for one pod, every case, without root or a runtime.
func TestDecidePodSync(t *testing.T) {
	for _, c := range []struct {
		name string
		o    podObserved
		want podAction
	}{
		{"new pod starts", podObserved{Phase: "Pending"}, podStart},
		{"pod without a phase starts", podObserved{}, podStart},
		{"running pod is reported", podObserved{OnNode: true, Phase: "Running"}, podReport},
		{"finished pod on the node is reported", podObserved{OnNode: true, Phase: "Succeeded"}, podReport},
		{"succeeded pod the node lost is never rerun", podObserved{Phase: "Succeeded"}, podWait},
		{"failed pod the node lost is never rerun", podObserved{Phase: "Failed"}, podWait},
		{"pod being started is left alone", podObserved{Busy: true, Phase: "Pending"}, podWait},
		{"deleted pod is terminated", podObserved{Deleting: true, OnNode: true, Phase: "Running"}, podTerminate},
		{"deleted pod never started is still confirmed", podObserved{Deleting: true, Phase: "Pending"}, podTerminate},
		{"deleted finished pod is confirmed", podObserved{Deleting: true, Phase: "Succeeded"}, podTerminate},
		{"deleted pod being started waits for the start", podObserved{Deleting: true, Busy: true}, podWait},
	} {
		if got := decidePodSync(c.o); got != c.want {
			t.Errorf("%s: %+v gives %d, want %d", c.name, c.o, got, c.want)
		}
	}
}
