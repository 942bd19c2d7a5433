//go:build !linux

package ingress

import (
	"errors"
	"net"
)

// evLoop: the event loops are Linux-only (evloop_linux.go); elsewhere
// every fast-path connection gets a goroutine.
type evLoop struct{ done chan struct{} }

func startLoops(*fastServer) ([]*evLoop, error) { return nil, nil }
func (l *evLoop) closeFDs()                     {}
func (l *evLoop) run() error                    { return nil }
func (l *evLoop) add(int, string) bool          { return false }
func (l *evLoop) shutdown(bool)                 {}
func takeFD(net.Conn) (int, error)              { return -1, nil }
func fdConn(int) (net.Conn, error)              { return nil, errors.ErrUnsupported }
