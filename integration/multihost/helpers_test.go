package multihost_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/hostlab"
	"github.com/skiffhq/skiff/integration/testutil"
)

// The fields of API objects the test reads (Kubernetes JSON names).
type condition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

type meta struct {
	Name   string            `json:"name"`
	UID    string            `json:"uid"`
	Labels map[string]string `json:"labels"`
}

type pod struct {
	Metadata meta `json:"metadata"`
	Spec     struct {
		NodeName string `json:"nodeName"`
	} `json:"spec"`
	Status struct {
		Phase             string      `json:"phase"`
		PodIP             string      `json:"podIP"`
		Conditions        []condition `json:"conditions"`
		ContainerStatuses []struct {
			RestartCount int  `json:"restartCount"`
			Ready        bool `json:"ready"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

func (p pod) ready() bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True" && p.Status.PodIP != ""
		}
	}
	return false
}

func (p pod) restarts() int {
	n := 0
	for _, c := range p.Status.ContainerStatuses {
		n += c.RestartCount
	}
	return n
}

type node struct {
	Metadata meta `json:"metadata"`
	Spec     struct {
		PodCIDR string `json:"podCIDR"`
	} `json:"spec"`
	Status struct {
		Conditions []condition `json:"conditions"`
	} `json:"status"`
}

func (n node) readyStatus() string { return n.ready().Status }

func (n node) ready() condition {
	for _, c := range n.Status.Conditions {
		if c.Type == "Ready" {
			return c
		}
	}
	return condition{}
}

type service struct {
	Spec struct {
		ClusterIP string `json:"clusterIP"`
		Ports     []struct {
			Port     int `json:"port"`
			NodePort int `json:"nodePort"`
		} `json:"ports"`
	} `json:"spec"`
}

// getList runs ctl get … -o json and decodes its items.
func getList[T any](c *hostlab.Cluster, args ...string) ([]T, error) {
	out, err := c.Ctl(append(append([]string{"get"}, args...), "-o", "json")...)
	if err != nil {
		return nil, err
	}
	var l struct {
		Items []T `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		return nil, fmt.Errorf("decode %q: %w", out, err)
	}
	return l.Items, nil
}

func nodes(c *hostlab.Cluster) (map[string]node, error) {
	ns, err := getList[node](c, "nodes")
	if err != nil {
		return nil, err
	}
	m := map[string]node{}
	for _, n := range ns {
		m[n.Metadata.Name] = n
	}
	return m, nil
}

// podsOf lists the pods of namespace ns with label app=app.
func podsOf(c *hostlab.Cluster, ns, app string) ([]pod, error) {
	return getList[pod](c, "pods", "-n", ns, "-l", "app="+app)
}

// waitPods waits until want(pods) holds for the app's pods and returns them.
func waitPods(t *testing.T, c *hostlab.Cluster, timeout time.Duration, ns, app, what string, want func([]pod) bool) []pod {
	t.Helper()
	var ps []pod
	var lastErr error
	ok := testutil.Eventually(timeout, func() bool {
		ps, lastErr = podsOf(c, ns, app)
		return lastErr == nil && want(ps)
	})
	if !ok {
		t.Fatalf("timed out after %s waiting for %s (last error %v); pods:\n%s", timeout, what, lastErr, describePods(ps))
	}
	return ps
}

func describePods(ps []pod) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "  %s on %q phase %s ip %s ready %v restarts %d\n", p.Metadata.Name, p.Spec.NodeName, p.Status.Phase, p.Status.PodIP, p.ready(), p.restarts())
	}
	return b.String()
}

// readyOn counts ready pods per node.
func readyOn(ps []pod) map[string]int {
	m := map[string]int{}
	for _, p := range ps {
		if p.ready() {
			m[p.Spec.NodeName]++
		}
	}
	return m
}

// netnsOf is the pod's network namespace as its worker host sees it (the
// agent of ctl join keeps them under <data-dir>/agent/netns/<pod uid>).
func netnsOf(dataDir string, p pod) string {
	return dataDir + "/agent/netns/" + p.Metadata.UID
}

// leaderHost is the control host whose node leads, from ctl members.
func leaderHost(t *testing.T, c *hostlab.Cluster) *hostlab.Host {
	t.Helper()
	var lead *hostlab.Host
	testutil.WaitFor(t, 30*time.Second, "a leader in ctl members", func() bool {
		out, err := c.Ctl("members")
		if err != nil {
			return false
		}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) == 6 && f[4] == "yes" {
				for _, h := range c.Controls {
					if h.Name == f[0] {
						lead = h
						return true
					}
				}
			}
		}
		return false
	})
	return lead
}
