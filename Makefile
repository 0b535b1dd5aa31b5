# egressd — see README.md.
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build test deps demo bench clean

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/egressd ./cmd/egressd

deps:
	./scripts/install-deps.sh

# Every test, the real-kernel ones included (they need root).
test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

demo: build deps
	./examples/demo.sh

bench: build deps
	./bench/run.sh

clean:
	rm -rf bin
