# Skiff — one binary, `ctl`. Every target installs what it needs (Debian
# packages, Go tools), so a fresh machine needs only Go and make.

GO        ?= go
BIN       := bin/ctl
PKGS      := ./...
# Debian packages the tests and demo use; `deps` installs only what is missing.
APT_PKGS  := protobuf-compiler libprotobuf-dev busybox-static containernetworking-plugins nftables \
             iptables ipvsadm iproute2 qemu-system-x86 linux-image-amd64 cpio xz-utils curl \
             etcd-server etcd-client runc libseccomp-dev docker-registry prometheus
PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
# The version go.mod already selects (grpc's dependency graph pins it).
PROTOC_GEN_VTPROTO := github.com/planetscale/vtprotobuf/cmd/protoc-gen-go-vtproto@v0.6.1-0.20240319094008-0393e58bdf10
# Packages on the hot path (stored objects, watch, Raft commands) also get
# reflection-free marshal/unmarshal/clone code (see proto/codec). API objects
# also get aliasing decoders; the sed caps each aliased bytes field's capacity
# so an append to it copies instead of writing into the buffer it came from.
VTPROTO_FEATURES   := marshal+unmarshal+size+clone+equal
GRPCURL            := github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
# API reference in docs/api/ (`make proto`); Python client code (clients/python).
PROTOC_GEN_DOC     := github.com/pseudomuto/protoc-gen-doc/cmd/protoc-gen-doc@v1.5.1
APT_PKGS  += python3 python3-grpcio python3-protobuf python3-yaml protobuf-compiler-grpc
# The dashboard's browser test and benchmark drive headless chromium (chromedp).
APT_PKGS  += chromium
# bench-ingress: wrk drives the ingress proxy and nginx (the anchor) side by side.
APT_PKGS  += wrk nginx
GOBIN     := $(shell $(GO) env GOPATH)/bin
export PATH := $(GOBIN):/usr/sbin:/sbin:$(PATH)

.PHONY: all build test test-race deps tools proto lint fmt vet bench bench-store \
        bench-api bench-scheduler bench-runtime bench-netproxy bench-dashboard bench-failover bench-gossip bench-stream soak fuzz demo clean

all: build

build:
	CGO_ENABLED=1 $(GO) build -o $(BIN) ./cmd/ctl

# The test command of the README and of CI. Root-only tests (containers,
# netns, nftables) run when root; the qemu IPVS test boots a Debian kernel.
# The store, the control plane and the client run under the race detector
# (only there: it finds everything a plain run does); see test-race.
test: deps
	$(GO) vet $(PKGS)
	$(GO) test -short -count=1 -timeout 30m -p 2 $$($(GO) list $(PKGS) | grep -v -E '$(RACE_ONLY_RE)')
	$(MAKE) --no-print-directory test-race
	cd integration/benchstore && $(GO) vet ./... && $(GO) test -short -count=1 -timeout 5m ./...

# Packages tested only with -race, and those (agent, netproxy) whose tests
# that need no root also run with -race: in a user namespace the test is not
# root, so its root-only tests skip (they ran above; a race-instrumented
# binary re-executed as a container's init needs more memory than a tight
# container limit allows).
RACE_ONLY_RE := ^github.com/skiffhq/skiff/(consensus|controlplane|proto/client)(/|$$)
RACE_NOROOT  := ./agent/... ./netproxy/...
test-race:
	$(GO) test -race -short -count=1 -timeout 30m -p 2 $$($(GO) list $(PKGS) | grep -E '$(RACE_ONLY_RE)')
	@if [ "$$(id -u)" = 0 ] && unshare --user true 2>/dev/null; then \
	  echo "unshare --user go test -race (as non-root) $(RACE_NOROOT)"; \
	  unshare --user $(GO) test -race -short -count=1 -timeout 10m -p 2 $(RACE_NOROOT); \
	else $(GO) test -race -short -count=1 -timeout 10m -p 2 $(RACE_NOROOT); fi

deps:
	@missing=""; for p in $(APT_PKGS); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "not root: cannot install$$missing (tests needing them will skip and say so)"; fi; \
	fi
	$(GO) mod download
	@test -x $(GOBIN)/grpcurl || $(GO) install $(GRPCURL)

tools:
	$(GO) install $(PROTOC_GEN_GO)
	$(GO) install $(PROTOC_GEN_GO_GRPC)
	$(GO) install $(PROTOC_GEN_VTPROTO)
	$(GO) install $(PROTOC_GEN_DOC)

# Regenerates every .proto under proto/ (generated code is committed).
proto: deps tools
	cd proto && for f in $$(find . -name '*.proto' | sort); do \
	  protoc -I . --go_out=. --go_opt=paths=source_relative \
	    --go-grpc_out=. --go-grpc_opt=paths=source_relative $$f || exit 1; done
	cd proto && for f in store/v1/*.proto api/v1/*.proto; do \
	  protoc -I . --go-vtproto_out=. --go-vtproto_opt=paths=source_relative \
	    --go-vtproto_opt=features=$(VTPROTO_FEATURES)+unmarshal_unsafe $$f || exit 1; done
	sed -i 's/= dAtA\[iNdEx:\(post[a-zA-Z]*Index\)\]$$/= dAtA[iNdEx:\1:\1]/' proto/api/v1/*_vtproto.pb.go proto/store/v1/*_vtproto.pb.go
	protoc -I proto --doc_out=docs/api --doc_opt=markdown,api-v1.md proto/api/v1/*.proto
	protoc -I proto --include_source_info --descriptor_set_out=cmd/ctl/internal/explain/api-v1.binpb proto/api/v1/*.proto
	protoc -I proto --doc_out=docs/api --doc_opt=markdown,admin-v1.md proto/admin/v1/*.proto
	protoc -I proto --doc_out=docs/api --doc_opt=markdown,stream-v1.md proto/stream/v1/*.proto
	clients/python/generate.sh

# The published API's descriptors, against which proto/compat's test checks
# every change for wire compatibility. Refresh only when a release publishes the API.
.PHONY: api-baseline
api-baseline: deps
	cd proto && protoc -I . --include_imports --descriptor_set_out=compat/api-v1.binpb api/v1/*.proto
	cd proto && protoc -I . --include_imports --descriptor_set_out=compat/admin-v1.binpb admin/v1/*.proto
	cd proto && protoc -I . --include_imports --descriptor_set_out=compat/stream-v1.binpb stream/v1/*.proto

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet $(PKGS)

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

bench: bench-store bench-api bench-scheduler bench-runtime bench-netproxy bench-dns bench-gossip

bench-store: deps
	cd integration/benchstore && $(GO) run . $(BENCH_ARGS)

# Leader kill -9 and SIGTERM restarts on three ctl processes under write
# load: time to the first acknowledged write after each.
bench-failover: deps build
	$(GO) run ./integration/benchfailover -ctl $(BIN) $(BENCH_ARGS)

bench-api: deps
	$(GO) run ./integration/benchapi $(BENCH_ARGS)

bench-scheduler: deps
	$(GO) run ./integration/benchscheduler -repeat 3 $(BENCH_ARGS)

bench-runtime: deps
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./agent/runtime/bench/... $(BENCH_ARGS)

# Exec round trip and logs -f throughput through the API relay, beside
# libcontainer's exec, a read of the log file on the node and the ceiling
# of the transport (one mTLS gRPC stream on loopback, one and two hops);
# the last line is the result (stream-bench: …). Root (containers).
bench-stream: deps
	@out=$$(mktemp); $(GO) test -count=1 -run '^$$' -bench '^BenchmarkStream$$' -benchtime 1x -timeout 30m \
	  ./cmd/ctl/internal/streamtest/ $(BENCH_ARGS) >$$out 2>&1; rc=$$?; \
	grep -v '^stream-bench:' $$out; grep '^stream-bench:' $$out | tail -1; rm -f $$out; exit $$rc

bench-netproxy: deps
	$(GO) run ./integration/benchnetproxy $(BENCH_ARGS)

# wrk through the built-in ingress proxy, through nginx and straight to the
# backends (loopback), interleaved rounds; ends with one ingress-bench: line.
.PHONY: bench-ingress
bench-ingress: deps
	$(GO) run ./integration/benchingress $(BENCH_ARGS)

# Pod status change → its row in a real browser (p50/p99), and the control
# node's CPU per idle open dashboard.
bench-dashboard: deps
	$(GO) run ./integration/benchdashboard $(BENCH_ARGS)

# Gossip failure detection at 10, 100 and 500 members on loopback (one
# process); `make test` runs it at 10 members (integration/benchgossip).
bench-gossip: deps
	$(GO) run ./integration/benchgossip $(BENCH_ARGS)

# Long runs of the parts that `make test` runs briefly (-short).
SOAK_TIME ?= 10m
soak: deps
	SKIFF_SOAK=$(SOAK_TIME) $(GO) test -count=1 -timeout 2h -run 'Linearizable|Soak' ./consensus/... ./integration/...

FUZZ_TIME ?= 2m
fuzz: deps
	@for spec in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$spec/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "fuzz $$spec $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZ_TIME) $$spec || exit 1; done; done

# Six machines on this one (integration/hostlab: network, mount, UTS and
# PID namespaces on a lab bridge with no route out): 3 control nodes, 2
# workers, an admin machine with the image registry. Root only.
demo: deps build
	$(GO) run ./integration/demo/multihost -ctl $(BIN)

clean:
	rm -rf bin

# dnsperf at a node's cluster DNS and at a bare miekg/dns server (the ceiling).
APT_PKGS += dnsperf
.PHONY: bench-dns
bench-dns: deps
	$(GO) run ./integration/benchdns $(BENCH_ARGS)
