# paygate — `make run` starts the gateway, `make test` checks everything.
.DEFAULT_GOAL := help
SHELL := /bin/bash
GO ?= go

.PHONY: help run test build lint deps deps-db deps-browser deps-cc bench screenshots fuzz soak

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

# As root the embedded PostgreSQL runs as the postgres user, which cannot
# enter a clone under a private home (mode 700 /root): then run keeps the
# development database under /var/lib/paygate instead, and says so. The
# binary is built and exec'd rather than go run: go run exits 1 after a
# Ctrl-C however cleanly paygate stopped, and make then reports an error.
run: deps-db ## start the gateway on :8000 in test mode on the embedded PostgreSQL in ./data (test merchant seeded)
	@data="$${DATA_DIR:-$(CURDIR)/data}"; \
	if [ -z "$$DATA_DIR" ] && [ -z "$$DATABASE_URL" ] && [ "$$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$(CURDIR)" 2>/dev/null; then \
	  data=/var/lib/paygate/dev-$$(printf %s "$(CURDIR)" | md5sum | cut -c1-8); mkdir -p "$$data"; \
	  echo "make run: the postgres user cannot enter $(CURDIR); the database lives in DATA_DIR=$$data"; \
	fi; \
	$(GO) build -o bin/paygate . && \
	DATA_DIR="$$data" TEST_MODE=$${TEST_MODE:-true} WEBHOOK_ALLOW_PRIVATE_NETWORKS=$${WEBHOOK_ALLOW_PRIVATE_NETWORKS:-true} \
	LOG_FORMAT=$${LOG_FORMAT:-text} exec bin/paygate serve

test: deps ## install what is missing, check the format, vet, run every test with the race detector
	@$(MAKE) --no-print-directory lint
	$(GO) test -race -count=1 -timeout 15m ./...
	@$(MAKE) --no-print-directory fuzz

soak: deps-db ## break the real binary under load: crash, SIGTERM, replicas, database outages (~7 min)
	PAYGATE_SOAK=1 $(GO) test -count=1 -timeout 20m -v ./soak

build: ## build bin/paygate
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/paygate .

# FUZZ_TARGETS is package:target; go test -fuzz takes one of each at a time.
# Their seed corpora also run as plain tests in every go test.
FUZZ_TARGETS := web:FuzzDecode web:FuzzValidRequestID payments:FuzzValidateCard payments:FuzzValidateVPA \
	db:FuzzIsID idempotency:FuzzParseKey merchants:FuzzValidCredential webhooks:FuzzCheckURL
# An execution count, not a duration: a -fuzztime duration races the fuzz
# coordinator's own deadline on a loaded machine and fails a target with a
# bare "context deadline exceeded" and no input (golang/go#75804).
FUZZTIME ?= 20000x

# The fuzz targets touch no database: the URL below only stops each test
# binary's TestMain from starting a PostgreSQL of its own. A real finding
# writes its input under testdata/fuzz and fails at once; only a run that
# ends in that bare deadline with no input written is tried once more.
fuzz: ## fuzz the request decoder and every validator, FUZZTIME (20000x) executions each
	@for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; \
	  for try in 1 2; do \
	    out=$$(PAYGATE_TEST_DATABASE_URL=postgres://fuzz@127.0.0.1:1/none \
	      $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) ./$$pkg 2>&1); rc=$$?; \
	    echo "$$out"; [ $$rc = 0 ] && break; \
	    if [ $$try = 1 ] && grep -q 'context deadline exceeded' <<<"$$out" && ! grep -q 'Failing input written' <<<"$$out"; then \
	      echo "fuzz: $$name stopped on the fuzz engine's own deadline with no failing input; once more"; continue; \
	    fi; \
	    exit 1; \
	  done; \
	done

bench: deps-db ## measure against the database ceiling (BENCH_FLAGS=-quick: under a minute; -cost: per statement)
	$(GO) run ./bench $(BENCH_FLAGS)

screenshots: deps-db deps-browser ## save the checkout and dashboard pages, laptop and phone size, into ./screenshots
	PAYGATE_SCREENSHOTS=$${PAYGATE_SCREENSHOTS:-$(CURDIR)/screenshots} $(GO) test -count=1 -run TestScreenshots ./web/ui

# GOFMT is the gofmt of the Go that builds, which PATH may not hold.
GOFMT = $(shell $(GO) env GOROOT)/bin/gofmt

lint: ## gofmt and go vet
	@unformatted="$$($(GOFMT) -l $$(git ls-files '*.go'))" || exit 1; \
	test -z "$$unformatted" || { echo "$$unformatted"; echo "run gofmt -w"; exit 1; }
	$(GO) vet ./...

# deps installs what is missing: the PostgreSQL server (paygate runs its own
# private PostgreSQL from those binaries), Chromium for the browser tests,
# and a C compiler with the C library headers (go test -race needs cgo). As
# root it uses apt-get; otherwise it says what to install. run, bench and
# soak need only the first: run not even that with DATABASE_URL set.
# One after the other, even under make -j, and each apt-get under a lock
# (flock, util-linux): two at once, from parallel targets, would fail on
# dpkg's lock.
deps:
	@$(MAKE) --no-print-directory -j1 deps-db deps-browser deps-cc

deps-db:
	@if [ -n "$$DATABASE_URL" ] && [ "$(MAKECMDGOALS)" = run ]; then exit 0; fi; \
	if ! command -v postgres >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing the PostgreSQL server"; \
	    flock /tmp/paygate-apt.lock sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null"; \
	  else \
	    echo "PostgreSQL server binaries are missing: sudo apt-get install postgresql (or, for make run, set DATABASE_URL to a PostgreSQL of your own)"; exit 1; \
	  fi; \
	fi
# The browser tests drive Debian's Chromium (DESIGN.md).
deps-browser:
	@if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Chromium for the browser tests"; \
	    flock /tmp/paygate-apt.lock sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null"; \
	  else \
	    echo "Chromium is missing (the browser tests need it): sudo apt-get install chromium"; exit 1; \
	  fi; \
	fi
# go test -race needs cgo: Go's C compiler (go env CC, gcc by default) and
# libc's headers; without them Go turns cgo off and -race refuses to run.
deps-cc:
	@if ! printf '#include <stdlib.h>\nint main(void) { return 0; }\n' | $$($(GO) env CC) -x c -o /dev/null - >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing gcc and libc6-dev (go test -race needs cgo)"; \
	    flock /tmp/paygate-apt.lock sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null"; \
	  else \
	    echo "A C compiler is missing (go test -race needs cgo): sudo apt-get install gcc libc6-dev"; exit 1; \
	  fi; \
	fi
