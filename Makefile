# paygate — `make run` starts the gateway, `make test` checks everything.
.DEFAULT_GOAL := help
SHELL := /bin/bash
GO ?= go

.PHONY: help run test build lint deps bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

run: deps ## start the gateway on :8000 on the embedded PostgreSQL (test merchant seeded)
	LOG_FORMAT=$${LOG_FORMAT:-text} $(GO) run . serve

test: deps ## install what is missing, vet, run every test with the race detector
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

build: ## build bin/paygate
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/paygate .

bench: deps ## measure against the database ceiling (BENCH_FLAGS=-quick: under a minute; -cost: per statement)
	$(GO) run ./bench $(BENCH_FLAGS)

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "run gofmt -w"; exit 1; }
	$(GO) vet ./...

# deps installs the PostgreSQL server when it is missing (paygate runs its
# own private PostgreSQL from those binaries). As root it uses apt-get;
# otherwise it says what to install.
deps:
	@if ! command -v postgres >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing the PostgreSQL server"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; \
	  else \
	    echo "PostgreSQL server binaries are missing: sudo apt-get install postgresql (or set DATABASE_URL)"; exit 1; \
	  fi; \
	fi
