package netproxy

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Protocol is a transport protocol a Service port carries.
type Protocol string

// Supported protocols.
const (
	TCP Protocol = "TCP"
	UDP Protocol = "UDP"
)

// number is the IP protocol number.
func (p Protocol) number() uint8 {
	if p == UDP {
		return 17
	}
	return 6
}

// ServiceKey names a Service (and its Endpoints).
type ServiceKey struct {
	Namespace string
	Name      string
}

func (k ServiceKey) String() string { return k.Namespace + "/" + k.Name }

// ServicePort is one port of a Service.
type ServicePort struct {
	Name       string
	Protocol   Protocol
	Port       uint16 // on the ClusterIP(s)
	TargetPort uint16 // on the endpoints
	NodePort   uint16 // 0: no NodePort
}

// Service is what the proxy needs from a Service object.
type Service struct {
	ServiceKey
	ClusterIPs []netip.Addr
	Ports      []ServicePort
	// AffinityTimeout > 0 means sessionAffinity ClientIP: a client keeps
	// reaching the same endpoint until it has been idle this long.
	AffinityTimeout time.Duration
}

// Endpoint is one address behind a Service.
type Endpoint struct {
	IP netip.Addr
	// Ready endpoints get new connections. An endpoint that is not ready
	// (or is terminating) gets none, but its existing connections finish.
	Ready       bool
	Terminating bool
}

// Endpoints lists the addresses behind the Service with the same key.
type Endpoints struct {
	ServiceKey
	Endpoints []Endpoint
}

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid")

// Validate reports the first bad field, naming it and its value.
func (s *Service) Validate() error {
	if s.Namespace == "" || s.Name == "" {
		return fmt.Errorf("%w: service %q: namespace and name are required", ErrInvalid, s.ServiceKey)
	}
	if len(s.ClusterIPs) == 0 {
		return fmt.Errorf("%w: service %s: clusterIPs is empty", ErrInvalid, s.ServiceKey)
	}
	for i, ip := range s.ClusterIPs {
		if !ip.Is4() {
			return fmt.Errorf("%w: service %s: clusterIPs[%d]=%q: only IPv4 is supported", ErrInvalid, s.ServiceKey, i, ip)
		}
	}
	if s.AffinityTimeout < 0 || (s.AffinityTimeout > 0 && s.AffinityTimeout < time.Second) {
		return fmt.Errorf("%w: service %s: sessionAffinity timeout=%s: must be 0 or at least 1s", ErrInvalid, s.ServiceKey, s.AffinityTimeout)
	}
	seen := map[string]bool{}
	for i, p := range s.Ports {
		if p.Protocol != TCP && p.Protocol != UDP {
			return fmt.Errorf("%w: service %s: ports[%d].protocol=%q: want TCP or UDP", ErrInvalid, s.ServiceKey, i, p.Protocol)
		}
		if p.Port == 0 {
			return fmt.Errorf("%w: service %s: ports[%d].port=0", ErrInvalid, s.ServiceKey, i)
		}
		if p.TargetPort == 0 {
			return fmt.Errorf("%w: service %s: ports[%d].targetPort=0", ErrInvalid, s.ServiceKey, i)
		}
		id := fmt.Sprintf("%s/%d", p.Protocol, p.Port)
		if seen[id] {
			return fmt.Errorf("%w: service %s: ports[%d]: %s declared twice", ErrInvalid, s.ServiceKey, i, id)
		}
		seen[id] = true
	}
	return nil
}

// Validate reports the first bad endpoint.
func (e *Endpoints) Validate() error {
	if e.Namespace == "" || e.Name == "" {
		return fmt.Errorf("%w: endpoints %q: namespace and name are required", ErrInvalid, e.ServiceKey)
	}
	for i, ep := range e.Endpoints {
		if !ep.IP.Is4() {
			return fmt.Errorf("%w: endpoints %s: endpoints[%d].ip=%q: only IPv4 is supported", ErrInvalid, e.ServiceKey, i, ep.IP)
		}
	}
	return nil
}
