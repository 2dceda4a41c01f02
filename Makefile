# Homeserver developer targets. `make run` and `make test` are the two set-up
# commands; everything else is optional.
GO        ?= go
DATA      ?= ./data
FUZZTIME  ?= 30s
BENCHTIME ?= 1x
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: run build test race bench fuzz lint fmt clean

## run: run one homeserver with embedded defaults (Pebble in $(DATA), embedded NATS)
run:
	$(GO) run ./cmd/homeserver serve --data $(DATA)

## build: build bin/homeserver
build:
	$(GO) build -o bin/homeserver ./cmd/homeserver

## test: vet and run every test (requirement suite included), and the
## concurrency tests again under the race detector
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -race -count=1 -timeout 20m -run 'Concurrent|SameBatch|CloseFinishes|ReadCache|GUC_5|MD_4|FED_4' ./eventlog ./client ./testnet ./mlsx

## race: the tests under the race detector (-short: smaller workloads, no power-loss simulation)
race:
	$(GO) test -race -short -count=1 -timeout 30m ./...

## bench: the Go benchmarks (longer runs: BENCHTIME=10000x)
bench:
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) ./...

## bench-full: every figure against this machine's limits (homeserver bench -h; BENCHFLAGS='--json', '--memory-events 1000000 --memory-groups 10000')
.PHONY: bench-full
bench-full:
	$(GO) run ./cmd/homeserver bench $(BENCHFLAGS)

## fuzz: run every fuzz target for FUZZTIME each
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

## lint: gofmt, go vet and staticcheck
lint:
	@test -z "$$(gofmt -l .)" || (gofmt -l .; echo "gofmt: files above need formatting"; exit 1)
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

## fmt: format the code
fmt:
	gofmt -w .

clean:
	rm -rf bin
