# spoolfs — a bare `make` lists the targets.
GO      ?= go
MNT     ?= $(CURDIR)/mnt
DATA    ?= $(CURDIR)/data
VOLUME  ?= spool
SPOOLFS_FLAGS ?=
TRIALS  ?= 300
SEED    ?= 0
BIN     := bin/spoolfs
GOFLAGS ?=
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: help deps build run test test-protocol test-invariants test-short test-churn lint proto proto-check fuzz bench-local bench-replicated bench-scale bench-scale-recovery clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

# What the tests need beyond Go: the FUSE helper (mounts as a normal user),
# setpriv (tests that run as another user), shellcheck and systemd-analyze
# (deploy's tests of scripts and units), promtool (the alert rules and their
# unit tests, the dashboard's queries, /metrics of live processes: deploy and
# e2e tests), gcc and the C library's headers (the e2e tests build xfstests'
# fsx from third_party/fsx). No protoc: make proto runs buf, a Go
# tool pinned in tools/go.mod, with the plugins pinned in go.mod.
DEPS_CMDS := fusermount3:fuse3 setpriv:util-linux shellcheck:shellcheck systemd-analyze:systemd promtool:prometheus gcc:gcc
# Files (not commands) the tests need, as path:package.
DEPS_FILES := /usr/include/stdio.h:libc6-dev
# buf in its own module file: its many dependencies stay out of go.mod.
BUF     := $(GO) tool -modfile=$(CURDIR)/tools/go.mod buf

deps: ## install what the tests need beyond Go (Debian packages; as root, else say what is missing)
	@need=""; for c in $(DEPS_CMDS); do command -v $${c%%:*} >/dev/null || need="$$need $${c#*:}"; done; \
	for f in $(DEPS_FILES); do [ -e $${f%%:*} ] || need="$$need $${f#*:}"; done; \
	if [ -z "$$need" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "missing Debian packages:$$need (install them: apt-get install$$need)"; exit 1; fi; \
	echo "installing$$need"; export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq && apt-get install -y -qq $$need

build: ## build bin/spoolfs (with the commit it was built from: spoolfs version)
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/spoolfs

run: build ## the whole system here: 3 replicas (data in ./data, DATA=...) and the primary of VOLUME=spool at ./mnt (MNT=...), until Ctrl-C
	@mkdir -p $(MNT)
	@./$(BIN) run --embedded --mount $(MNT) --volume $(VOLUME) --data $(DATA) $(SPOOLFS_FLAGS)

# Every package but replication runs with -tags invariants: fsactor's actor
# checks its state after every step, on the mount tests and in the spoolfs
# binaries the tests build (fsactor/doc.go, "Invariants"). replication runs
# without the tag here, then its protocol test with it.
test: deps build proto-check lint ## every test, with -race (mount tests need root or /dev/fuse); -tags invariants but for replication
	$(GO) test -race -count=1 -timeout 40m ./replication
	$(GO) test -tags invariants -race -count=1 -timeout 40m $$($(GO) list ./... | grep -v '/replication$$')
	$(GO) test -tags invariants -count=1 ./replication -run '^(TestProtocolRandom|TestInvariantChecksFire)$$' -protocol-budget 45s

test-protocol: ## the randomized protocol test, long: SCHEDULES (default 1000000) schedules, with -tags invariants
	$(GO) test -tags invariants -count=1 -timeout 0 ./replication -run '^TestProtocolRandom$$' -v -schedules $${SCHEDULES:-1000000}

test-invariants: ## the replication tests with -tags invariants (every protocol invariant checked)
	$(GO) test -tags invariants -race -count=1 -timeout 40m ./replication

test-short: ## unit tests only, no mounts
	$(GO) test -race -short -count=1 ./...

test-churn: build ## TestChurn for CHURN (default 10m): churn on a replicated mount with forced resyncs, memory and close bounds
	$(GO) test -count=1 -timeout 30m -run 'TestChurn$$' -v ./e2e -e2e.churn=$${CHURN:-10m}

test-faults: build ## fault injection on the real binaries: TRIALS=300 seeded trials (SEED=n replays a run; make test runs 9)
	$(GO) test -count=1 -timeout 0 -v -run '^TestFaults$$' ./e2e -faults.trials=$(TRIALS) -faults.seed=$(SEED)

lint: ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

proto: ## regenerate the protobuf and gRPC code in proto/ (buf and the plugins are Go tools: no protoc)
	cd proto && $(BUF) generate

proto-check: ## fail if `make proto` would change the committed code
	@if ls proto/*.proto >/dev/null 2>&1; then $(MAKE) -s proto && git diff --exit-code -- proto/; fi

fuzz: ## run each fuzz target for FUZZTIME (default 30s)
	$(GO) test ./replication -run '^$$' -fuzz FuzzApply -fuzztime $${FUZZTIME:-30s}
	$(GO) test ./replication -run '^$$' -fuzz FuzzLogCheck -fuzztime $${FUZZTIME:-30s}

test-kill: build ## the kill test's long form: 1000 SIGKILLs of a serving spoolfs (KILLS=...), each reaped within 1 s
	$(GO) test -count=1 -timeout 60m -run '^TestKill$$' -v ./e2e -e2e.kills=$${KILLS:-1000}

bench-local: build ## spoolfs --local vs tmpfs vs jacobsa memfs, 1 and 8 clients
	$(GO) run ./cmd/spoolfs bench compare --suite local

bench-replicated: build ## spoolfs with 3 replicas vs local disk with fsync, 1/8/32 writers
	./$(BIN) bench compare --suite replicated

.PHONY: bench-follow
bench-follow: build ## follower lag: close() on a primary → visible on a follower, 1,000 files/s for 10 s, p50/p99/max
	./$(BIN) bench follow-lag

bench-scale: ## 1,000,000 queued files of 1 KiB on one --local volume (FILES=...): create, list, read, delete; RSS, memfd bytes, descriptors
	$(GO) test -count=1 -timeout 60m -run '^$$' -bench '^BenchmarkScale$$' -benchtime 1x ./e2e -e2e.scalefiles=$${FILES:-1000000}

bench-scale-recovery: ## recovery of a replicated volume of FILES (default 1000000) files of 1 KiB: the next primary's time to serve (SEED=dir keeps/reuses the written volume, PROFILE=dir CPU profiles)
	$(GO) test -count=1 -timeout 90m -run '^TestScaleRecovery$$' -v ./e2e -e2e.recoveryfiles=$${FILES:-1000000} \
		-e2e.recoveryseed="$${SEED:-}" -e2e.recoveryprofile="$${PROFILE:-}"

clean:
	rm -rf bin
