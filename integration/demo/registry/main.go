package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/skiffhq/skiff/agent/runtime/runtimetest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5000", "listen address")
	repo := flag.String("image", "skiff/hello:1", "repository:tag of the demo image")
	flag.Parse()
	if err := run(*addr, *repo); err != nil {
		fmt.Fprintln(os.Stderr, "demo registry:", err)
		os.Exit(1)
	}
}

func run(addr, repo string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	layer, err := runtimetest.BusyboxLayer(map[string]string{"/www/index.html": "hello from skiff\n"})
	if err != nil {
		return fmt.Errorf("build image layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	img, err = mutate.Config(img, v1.Config{Cmd: []string{"/bin/sh"}, Env: []string{"PATH=/bin"}, WorkingDir: "/"})
	if err != nil {
		return err
	}
	tag, err := name.NewTag(ln.Addr().String()+"/"+repo, name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.Write(tag, img); err != nil {
		return fmt.Errorf("push %s: %w", tag, err)
	}
	fmt.Printf("demo registry on %s serving %s\n", ln.Addr(), tag)
	return <-errc
}
