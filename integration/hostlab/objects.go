package hostlab

import (
	"encoding/json"
	"fmt"
	"strings"
)

// The fields of API objects that lab users read, with Kubernetes' JSON
// names, from `ctl get … -o json`.

// Condition is a status condition.
type Condition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// Meta is the part of metadata read here.
type Meta struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	UID       string            `json:"uid"`
	Labels    map[string]string `json:"labels"`
}

// Pod is a pod as ctl get shows it.
type Pod struct {
	Metadata Meta `json:"metadata"`
	Spec     struct {
		NodeName string `json:"nodeName"`
	} `json:"spec"`
	Status struct {
		Phase             string      `json:"phase"`
		PodIP             string      `json:"podIP"`
		Conditions        []Condition `json:"conditions"`
		ContainerStatuses []struct {
			RestartCount int  `json:"restartCount"`
			Ready        bool `json:"ready"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

// Ready: condition Ready is True and the pod has an IP.
func (p Pod) Ready() bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True" && p.Status.PodIP != ""
		}
	}
	return false
}

// Restarts sums the containers' restart counts.
func (p Pod) Restarts() int {
	n := 0
	for _, c := range p.Status.ContainerStatuses {
		n += c.RestartCount
	}
	return n
}

// Node is a Node as ctl get shows it.
type Node struct {
	Metadata Meta `json:"metadata"`
	Spec     struct {
		PodCIDR string `json:"podCIDR"`
	} `json:"spec"`
	Status struct {
		Conditions []Condition `json:"conditions"`
	} `json:"status"`
}

// Ready is the node's Ready condition (zero when it has none).
func (n Node) Ready() Condition {
	for _, c := range n.Status.Conditions {
		if c.Type == "Ready" {
			return c
		}
	}
	return Condition{}
}

// Service is a Service as ctl get shows it.
type Service struct {
	Metadata Meta `json:"metadata"`
	Spec     struct {
		Type      string `json:"type"`
		ClusterIP string `json:"clusterIP"`
		Ports     []struct {
			Port     int `json:"port"`
			NodePort int `json:"nodePort"`
		} `json:"ports"`
	} `json:"spec"`
}

// GetList runs ctl get args… -o json as admin and decodes the items (or
// the one object a get by name shows).
func GetList[T any](c *Cluster, args ...string) ([]T, error) {
	out, err := c.Ctl(append(append([]string{"get"}, args...), "-o", "json")...)
	if err != nil {
		return nil, err
	}
	var l struct {
		Kind  string `json:"kind"`
		Items []T    `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		return nil, fmt.Errorf("decode ctl get %s: %w", strings.Join(args, " "), err)
	}
	if l.Kind != "List" { // one object asked for by name
		var one T
		if err := json.Unmarshal([]byte(out), &one); err != nil {
			return nil, fmt.Errorf("decode ctl get %s: %w", strings.Join(args, " "), err)
		}
		return []T{one}, nil
	}
	return l.Items, nil
}

// Nodes are the cluster's Nodes by name.
func (c *Cluster) Nodes() (map[string]Node, error) {
	ns, err := GetList[Node](c, "nodes")
	if err != nil {
		return nil, err
	}
	m := map[string]Node{}
	for _, n := range ns {
		m[n.Metadata.Name] = n
	}
	return m, nil
}

// Pods lists the pods of namespace ns matching the label selector.
func (c *Cluster) Pods(ns, selector string) ([]Pod, error) {
	return GetList[Pod](c, "pods", "-n", ns, "-l", selector)
}

// Service reads one Service.
func (c *Cluster) Service(ns, name string) (Service, error) {
	ss, err := GetList[Service](c, "services", name, "-n", ns)
	if err != nil {
		return Service{}, err
	}
	if len(ss) != 1 {
		return Service{}, fmt.Errorf("service %s/%s: %d found", ns, name, len(ss))
	}
	return ss[0], nil
}

// ReadyOn counts ready pods per node.
func ReadyOn(ps []Pod) map[string]int {
	m := map[string]int{}
	for _, p := range ps {
		if p.Ready() {
			m[p.Spec.NodeName]++
		}
	}
	return m
}

// WorkerDataDir is ctl join's default data dir, in each host's own /var/lib.
const WorkerDataDir = "/var/lib/skiff"

// PodNetns is the pod's network namespace as its worker host sees it: the
// agent ctl join runs keeps them under <data-dir>/agent/netns/<pod uid>.
// Curl with it sends from the pod's own address.
func PodNetns(dataDir string, p Pod) string {
	return dataDir + "/agent/netns/" + p.Metadata.UID
}

// Host is the host of the named node (a control or worker host of c).
func (c *Cluster) Host(name string) *Host {
	for _, h := range append(append([]*Host{}, c.Controls...), c.Workers...) {
		if h.Name == name {
			return h
		}
	}
	return nil
}
