# reprov — see README.md. Two commands set everything up on a fresh Debian
# machine with Go: `make demo` and `make test`.

GO        ?= go
BIN       := bin
PKGS      := ./...
FUZZTIME  ?= 30s
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null)
# The commit's date, not the build's: two builds of one commit are the same.
DATE      ?= $(shell git log -1 --format=%cI 2>/dev/null)
LDFLAGS   := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
# make install PREFIX=/usr/local [DESTDIR=/tmp/pkgroot]
PREFIX    ?= /usr/local
DESTDIR   ?=

.PHONY: all build man install uninstall demo test test-deps unit docs-test lint fmt fuzz bench bench-peers bench-10k fault-matrix clean

all: build

# reprov, and next to it the slim agent it pushes to nodes for the in-band
# step (FindAgentBinary looks there), one per supported node architecture.
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/reprov ./cmd/reprov
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $(BIN)/reprov-agent-linux-amd64 ./cmd/reprov-agent
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $(BIN)/reprov-agent-linux-arm64 ./cmd/reprov-agent

## man: the man pages of every command, from the command tree (cobra/doc)
man: build
	rm -rf $(BIN)/man && ./$(BIN)/reprov man-pages $(BIN)/man

## install: reprov in PREFIX/bin, the agent builds in PREFIX/lib/reprov
## (where reprov looks for them), the man pages in PREFIX/share/man/man1
install: build man
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/reprov $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 $(BIN)/reprov $(DESTDIR)$(PREFIX)/bin/reprov
	install -m 0755 $(BIN)/reprov-agent-linux-amd64 $(BIN)/reprov-agent-linux-arm64 $(DESTDIR)$(PREFIX)/lib/reprov/
	install -m 0644 $(BIN)/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/reprov $(DESTDIR)$(PREFIX)/share/man/man1/reprov.1 $(DESTDIR)$(PREFIX)/share/man/man1/reprov-*.1
	rm -rf $(DESTDIR)$(PREFIX)/lib/reprov

## demo: the main job on an embedded example (nothing real is touched)
demo: build
	./$(BIN)/reprov demo

## test: installs missing Debian test tools, lints, runs every test (fuzz seed corpora included)
test: test-deps lint unit

test-deps:
	./scripts/test-deps.sh

unit:
	$(GO) test -count=1 -timeout 20m $(PKGS)

## docs-test: the commands of the docs' ```sh test blocks, against a lab (part of make test)
docs-test:
	$(GO) test -count=1 -run TestDocsCommandsRun ./cmd/reprov

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

## fuzz: the long fuzz runs (FUZZTIME each)
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run='^$$' -fuzz="^$$f\$$" -fuzztime=$(FUZZTIME) $$pkg; \
	  done; done

bench:
	$(GO) test -run='^$$' -bench=. -benchmem $(PKGS)

## bench-peers: reprov vs FreeIPMI vs ipmitool against the same 256 BMCs
bench-peers:
	./scripts/bench-peers.sh

## bench-10k: the controller alone reinstalling BENCH_NODES simulated nodes (the lab in another process): wall time, nodes/s, max RSS
BENCH_NODES ?= 10000
bench-10k:
	./scripts/bench-10k.sh -n $(BENCH_NODES)

## fault-matrix: 1,000 simulated nodes, every fault of docs/reliability.md, the report in FAULT_MATRIX_OUT
FAULT_MATRIX_OUT ?= $(BIN)/fault-matrix
fault-matrix: build
	$(GO) run ./lab/faultmatrix/cmd/faultmatrix -reprov $(BIN)/reprov -matrix full -out $(FAULT_MATRIX_OUT) -commit $(VERSION)

clean:
	rm -rf $(BIN)

# make e2e: a real virtual node (QEMU, SeaBIOS, iPXE, ipmi_sim) reinstalled by reprov.
include e2e/e2e.mk
