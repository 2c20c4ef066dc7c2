# gitreceive — see README.md. Targets need Go 1.26 (go.mod's toolchain line
# fetches it through any Go >= 1.21); system packages come from apt-get.

GO        ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN       := bin/gitreceive
# The tree's version (packaging/version.sh: the last vX.Y.Z tag or the VERSION file, plus
# +gitN.HASH after it), which is also the Debian package's version.
VERSION   := $(shell ./packaging/version.sh || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME  ?= 60s
FUZZTIME_TEST ?= 3s
# Minimizing each new input go test -fuzz finds is bounded by count: by default it gets up to
# 60 s, which a target whose every run touches files (the tar readers) spent on its first find,
# fuzzing nothing else in the whole budget.
FUZZMINIMIZE ?= 100x

# What the receiver needs at run time, and what the tests need on top (the
# test bed's nodes run sshd in network namespaces: iproute2, util-linux; they
# see the host's packages beneath their overlays, so the node stack and the
# interpreters `run` uses are installed here too, and so are the services' servers and the
# client libraries of examples/servicesapp: each test node starts its own servers; lintian and
# systemd's systemd-analyze check the .deb).
RUN_PKGS  := git
TEST_PKGS := git openssh-client openssh-server openssh-sftp-server iproute2 util-linux bash procps \
             nginx uwsgi-core uwsgi-emperor uwsgi-plugin-python3 uwsgi-plugin-php python3 php-cli \
             postgresql postgresql-15-postgis-3 mariadb-server mariadb-client redis-server redis-tools \
             python3-psycopg2 python3-pymysql python3-redis lintian systemd
# Real apps the e2e tests deploy as a user would (cmd/gitreceive/realapps), and
# dpkg-dev to build their local apt repository. A second step: wordpress needs
# an httpd, which nginx, installed first, provides (so apache2 never comes in).
TEST_APP_PKGS := python3-django wordpress dpkg-dev
TESTBED_PREFIX ?= gr
TESTBED_ARGS   ?= --subnet 10.77.0.0/24 --count 3

# make deb: DEB_DIR/gitreceive_VERSION_ARCH.deb, built with dpkg-deb alone (packaging/build-deb.sh;
# what is in it: packaging/debian/). The binary in it is static and built without the build
# path and without symbol tables (-s -w: panics still print their stacks), its files dated by the
# commit: one commit gives the same package.
DEB_DIR   ?= bin
DEB_ARCH  := $(shell dpkg --print-architecture 2>/dev/null)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)

.PHONY: all build run install deb test unit lint fuzz bench scale testbed-up testbed-down deps-run deps-test clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/gitreceive

# Build, install /usr/local/bin/gitreceive (as root), set this host up as
# node `local` (nginx, uWSGI, the app user: idempotent) and run the receiver
# on :2222.
run: deps-run build
	@if [ "$$(id -u)" = 0 ]; then install -m 0755 $(BIN) /usr/local/bin/gitreceive && \
	  /usr/local/bin/gitreceive nodes setup local && exec /usr/local/bin/gitreceive serve; \
	else echo "not root: running $(BIN) without installing it or setting up the local node"; exec $(BIN) serve; fi

install: build
	install -m 0755 $(BIN) /usr/local/bin/gitreceive

deb:
	@if [ -z "$(DEB_ARCH)" ]; then echo "make deb: dpkg --print-architecture failed: build the package on Debian or Ubuntu"; exit 1; fi
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $(DEB_DIR)/deb-build/gitreceive ./cmd/gitreceive
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) ./packaging/build-deb.sh $(DEB_DIR)/deb-build/gitreceive "$(VERSION)" $(DEB_ARCH) $(DEB_DIR)

# Everything CI runs: missing packages installed, checks, every test. The e2e tests (test-bed
# nodes, root, the built binary driven by real ssh and git) are behind the build tag e2e; a test
# that needs root or the test bed and cannot have them fails under CI=true instead of skipping.
# Two runs, so that the whole stays within 20 minutes on 2 cores:
# 1. every package but the ones that drive the built binary, under the race
#    detector: the unit tests, and the e2e tests that run the receiver, the
#    agent and the services in the test process (receiver's in-process
#    servers, the drain, HTTPS with pebble, the agent on test nodes);
# 2. the e2e tests that drive bin/gitreceive (cmd/gitreceive and its fault
#    suite and real apps, the package's install tests), two packages at a
#    time, without the race detector: the binary they run is built without
#    it, so it would only slow the test harness and the test nodes' init,
#    which are the test binary.
# The 100-node fan-out is `make scale`: it takes 5 to 8 minutes on 2 cores
# (it took 40 s when node setup was smaller), and beside the other e2e tests
# it starves them and they it.
BINARY_E2E := ./cmd/gitreceive/... ./packaging/...
test: deps-test lint
	$(GO) test -race -count=1 -timeout 15m -tags e2e $$($(GO) list -tags e2e ./... | grep -v -e /cmd/gitreceive -e /packaging)
	$(GO) test -count=1 -timeout 15m -tags e2e -skip '^TestFanOutToHundredNodes$$' $(BINARY_E2E)
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME_TEST)

# The 100-node fan-out alone (root, the test bed): 100 nodes set up, two pushes, v2 on every node.
scale: deps-test
	$(GO) test -count=1 -timeout 20m -tags e2e -run '^TestFanOutToHundredNodes$$' -v ./cmd/gitreceive/

# The tests without the e2e tag: pure logic and local files, seconds, no root, no test nodes.
unit:
	$(GO) test -count=1 ./...

# Vetted and linted untagged and with every tag (e2e, bench): a helper that only tagged files use
# must live in a file with the same tag, or the untagged build reports it unused (and the tagged
# one would not compile without it). staticcheck over the whole tree costs about a minute on two
# cores, so not once per tag.
LINT_TAGS := e2e,bench
lint:
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@for tags in $(LINT_TAGS); do echo "$(GO) vet -tags $$tags ./..."; $(GO) vet -tags $$tags ./... || exit 1; done
	$(GO) run $(STATICCHECK) ./...
	@for tags in $(LINT_TAGS); do echo "$(GO) run $(STATICCHECK) -tags $$tags ./..."; \
	  $(GO) run $(STATICCHECK) -tags $$tags ./... || exit 1; done

# Every fuzz target (a parser of untrusted input) is found in the code: `go test -list` over every
# package, without the e2e tag as the fuzzing runs are, gives TARGET:PACKAGE pairs (go test -fuzz
# takes one target at a time). FUZZ narrows them by name (a regexp). `make test` runs each for
# FUZZTIME_TEST, `make fuzz` for FUZZTIME.
FUZZ ?= ^Fuzz
fuzz:
	@list=$$($(GO) test -list '$(FUZZ)' ./... 2>&1) || { echo "$$list"; echo "fuzz: go test -list '$(FUZZ)' failed"; exit 1; }; \
	targets=$$(echo "$$list" | awk '/^Fuzz/ { names = names " " $$1 } \
	  /^ok / { n = split(names, a, " "); for (i = 1; i <= n; i++) print a[i] ":" $$2; names = "" }'); \
	count=$$(echo "$$targets" | grep -c .); \
	if [ "$$count" = 0 ]; then echo "fuzz: no fuzz target matches '$(FUZZ)'"; exit 1; fi; \
	echo "fuzz: $$count targets"; \
	for t in $$targets; do \
	  echo "fuzz $${t%%:*} ($(FUZZTIME))"; \
	  out=$$($(GO) test -run=NONE -fuzz="^$${t%%:*}\$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZE) -parallel=1 $${t#*:} 2>&1); rc=$$?; \
	  echo "$$out"; \
	  if [ $$rc != 0 ]; then \
	    if echo "$$out" | grep -q "context deadline exceeded" && ! echo "$$out" | grep -q "Failing input written"; then \
	      echo "fuzz $${t%%:*}: go test's fuzzing ran out its time while a worker was busy; no failing input, not a finding"; \
	    else exit 1; fi; \
	  fi; \
	done

bench: deps-test
	@./.ci/apt-ensure rsync
	$(GO) test -tags bench -count=1 -timeout 60m -run '^TestBench' -v ./cmd/gitreceive/

# Test nodes for people (root): network namespaces running sshd; see nodes/testbed.
testbed-up: deps-test
	$(GO) run ./nodes/testbed/testbedctl up --prefix $(TESTBED_PREFIX) $(TESTBED_ARGS)

testbed-down:
	$(GO) run ./nodes/testbed/testbedctl down --prefix $(TESTBED_PREFIX)

deps-run:
	@./.ci/apt-ensure $(RUN_PKGS)

deps-test:
	@./.ci/apt-ensure $(TEST_PKGS)
	@./.ci/apt-ensure $(TEST_APP_PKGS)

clean:
	rm -rf bin
