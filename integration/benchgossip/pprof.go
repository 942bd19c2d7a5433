package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
)

// servePprof serves the runtime's profiles (CPU, goroutines, mutex and
// block contention) on addr, which must be a loopback address: the bench
// is looked into while a cluster forms, which is when it melts down.
func servePprof(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-pprof %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-pprof %q: not a loopback address", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("-pprof: %w", err)
	}
	runtime.SetMutexProfileFraction(20)
	runtime.SetBlockProfileRate(int(1e6)) // one sample per ms blocked
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	go func() {
		// The bench's own diagnostics: an error here ends only the
		// profile server, and says so.
		if err := http.Serve(ln, mux); err != nil {
			fmt.Println("benchgossip: pprof server:", err)
		}
	}()
	return nil
}
