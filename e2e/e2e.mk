# make e2e: reprov end to end on a real virtual machine — QEMU (TCG), SeaBIOS,
# iPXE, a disk with an MBR, a tiny Linux with sshd, OpenIPMI's ipmi_sim as its
# BMC (docs/testing.md). Included by the Makefile.
#
#   1. scripts/e2e/install-deps.sh  Debian packages when missing; the Debian
#                                   kernel and its modules (cached)
#   2. scripts/e2e/build-image.sh   the node's disk image (cached by its inputs)
#   3. reprov and the amd64 reprov-agent it pushes, into $(BIN)
#   4. go test -tags e2e ./e2e/...  the rig, then the reinstall scenarios
#
# Needs root for step 1 when packages are missing. REPROV_E2E_CACHE moves the
# cache (default /var/cache/reprov-e2e as root). E2E_RUN selects tests
# (go test -run), e.g. make e2e E2E_RUN=TestE2E/rig.

GO          ?= go
BIN         ?= bin
E2E_TIMEOUT ?= 20m
E2E_RUN     ?= .

.PHONY: e2e e2e-image e2e-lint

## e2e: installs what it needs, builds the node image, runs the end-to-end test
e2e: e2e-lint
	@set -e; \
	  img=$$(./scripts/e2e/build-image.sh | tail -n 1); \
	  $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/reprov ./cmd/reprov; \
	  CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" \
	    -o $(BIN)/reprov-agent-linux-amd64 ./cmd/reprov-agent; \
	  REPROV_E2E_IMAGE="$$img" REPROV_E2E_BIN="$(CURDIR)/$(BIN)" \
	    $(GO) test -tags e2e -count=1 -timeout $(E2E_TIMEOUT) -run '$(E2E_RUN)' -v ./e2e/...

## e2e-image: only the node image (prints its directory)
e2e-image:
	./scripts/e2e/build-image.sh

# The e2e test file has a build tag: lint it with the tag.
e2e-lint:
	$(GO) vet -tags e2e ./e2e/...
	$(GO) tool staticcheck -tags e2e ./e2e/...
