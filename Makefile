# pinwall's make targets. The two a newcomer needs:
#   make demo   run the whole scenario catalogue in-process; verdict table + ./evidence
#   make test   run every test (go test -race ./...)

GO       ?= go
COMMIT   := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
VERSION  := $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
PINWALL  := bin/pinwall
# PARALLEL, if set, is --parallel for demo and interceptors; empty takes
# pinwall's default (the cores, at least 4).
PARALLEL ?=

.PHONY: all build demo test test-short lint tools fuzz bench lab-demo image image-tools interceptors compose clean

all: lint test

# -buildvcs=auto stamps the commit and the tree's state into the binary's
# build information (runtime/debug.ReadBuildInfo) even where GOFLAGS says
# -buildvcs=false; outside a git checkout the binary says "unknown (built
# without VCS info)".

build:
	@echo "build: go build ./cmd/pinwall -> $(PINWALL) (a first build downloads and compiles the Go modules, which takes a few minutes)"
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=auto -ldflags '$(LDFLAGS)' -o $(PINWALL) ./cmd/pinwall

# demo runs the whole catalogue in-process, prints the verdict table and
# writes the evidence bundle (report.html, report.md, evidence.json,
# junit.xml, vendor-format logs, manifest.sha256) to ./evidence.
demo: build
	@echo "demo: running the whole catalogue in-process; a line per run as it finishes"
	./$(PINWALL) run --all $(if $(PARALLEL),--parallel $(PARALLEL)) --out evidence

# test runs every test with the race detector. The container suite runs
# when a Docker engine answers and skips with a one-line reason otherwise.
test:
	$(GO) test -race -count=1 -timeout 30m ./...

# test-short skips the catalogue suite and the container suite.
test-short:
	$(GO) test -short -count=1 ./...

# The linters make lint runs besides go vet and gofmt, at pinned versions.
# `make tools` installs them (into $(GOBIN), else $(go env GOPATH)/bin);
# .ci/run does so before `make lint`.
STATICCHECK_VERSION := v0.8.2
GOCYCLO_VERSION     := v0.6.0
GOCYCLO_OVER        := 30
TOOLBIN  := $(or $(shell $(GO) env GOBIN),$(shell $(GO) env GOPATH)/bin)
# tool NAME finds a linter on PATH or in TOOLBIN.
tool = $(or $(shell command -v $(1) 2>/dev/null),$(wildcard $(TOOLBIN)/$(1)))

tools:
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GO) install github.com/fzipp/gocyclo/cmd/gocyclo@$(GOCYCLO_VERSION)

# lint: go vet; gofmt; go.mod and go.sum tidy; staticcheck at zero findings;
# no non-test function with cyclomatic complexity above GOCYCLO_OVER. A
# missing linter or one at another version than pinned fails the target.
lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@GOOS=darwin $(GO) vet ./netsetup ./mitm ./hostnet 2>/dev/null || true
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }
	@$(call checktool,staticcheck,honnef.co/go/tools,$(STATICCHECK_VERSION))
	$(call tool,staticcheck) ./...
	@$(call checktool,gocyclo,github.com/fzipp/gocyclo,$(GOCYCLO_VERSION))
	@out=$$($(call tool,gocyclo) -over $(GOCYCLO_OVER) -ignore '_test\.go$$' .); \
	if [ -n "$$out" ]; then echo "cyclomatic complexity above $(GOCYCLO_OVER) (split these functions):"; echo "$$out"; exit 1; fi

# checktool NAME,MODULE,VERSION fails unless the linter NAME is installed
# from MODULE at VERSION.
checktool = bin='$(call tool,$(1))'; \
	if [ -z "$$bin" ]; then echo "lint: $(1) not found on PATH or in $(TOOLBIN): run make tools" >&2; exit 1; fi; \
	got=$$($(GO) version -m "$$bin" | awk '$$1 == "mod" && $$2 == "$(2)" { print $$3 }'); \
	if [ "$$got" != "$(3)" ]; then echo "lint: $$bin is $(2) $${got:-of unknown version}, want $(3): run make tools" >&2; exit 1; fi

# fuzz runs every fuzz target (found with go test -list) for FUZZTIME each.
FUZZTIME ?= 20s
fuzz:
	@set -e; for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for fn in $$($(GO) test -list '^Fuzz' $$dir | grep '^Fuzz'); do \
			echo "== $$fn ($$dir)"; \
			$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s $$dir; \
		done; \
	done

# bench measures the tunnel and the firewall (beside a Go relay, sslsplit and
# mitmproxy, installed with apt-get when missing) in one run and prints the
# figures with their ratios and goals. BENCHFLAGS passes flags to the report,
# e.g. make bench BENCHFLAGS='-d 3s -only firewall'.
bench:
	$(GO) run ./bench/cmd/report $(BENCHFLAGS)

# lab-demo starts the interactive lab, fetches a page through the client's
# SOCKS5 listener with curl and prints what the gateway saw.
lab-demo: build
	./scripts/lab-demo.sh

# image builds the node image (FROM scratch, the static binary) as
# pinwall-node:local; compose writes the visibility topology as a
# docker-compose project in docker/visibility.
image: build
	cp $(PINWALL) docker/pinwall && docker build -q -t pinwall-node:local docker; rm -f docker/pinwall

# image-tools makes the third-party interceptors' image (mitmproxy,
# squid-openssl, sslsplit from Debian bookworm through mmdebstrap, about a
# minute the first time; nothing when the image for the package list is
# there) and the firewall image on it.
image-tools: build
	./$(PINWALL) image --tools

# interceptors runs the whole catalogue in containers with pinwall's
# firewall, mitmproxy, squid and sslsplit each in the firewall's place, and
# writes the evidence with the four side by side to ./evidence-interceptors.
interceptors: image-tools
	./$(PINWALL) run --mode containers --firewall all --all $(if $(PARALLEL),--parallel $(PARALLEL)) --out evidence-interceptors

compose: image
	./$(PINWALL) compose --scenario visibility --dir docker/visibility

clean:
	rm -rf bin evidence evidence-interceptors lab docker/visibility
