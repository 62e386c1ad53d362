# kiln's developer and CI entry points. CI (.ci/run) runs `make test`.
#
#   make build   build bin/kiln and bin/kiln-core
#   make test    gofmt check, go vet, go test -race, then a short fuzz run of every target
#   make bench   run the benchmarks
#   make fmt     format the Go sources (gofumpt when installed, else gofmt)
#   make proto   regenerate api/*.pb.go from api/*.proto

# Go lives in /usr/local/go on our machines, which is not always on PATH.
export PATH := $(PATH):/usr/local/go/bin

GO ?= go
# -count=1: the end-to-end tests in ./test run a kiln binary built from other packages,
# which Go's test cache does not track, so a cached result could be stale.
TESTFLAGS ?= -race -count=1 -timeout 20m
FUZZTIME ?= 10s
BENCHFLAGS ?= -benchmem

# Go files that gofmt checks: all but testdata (which may hold invalid Go on purpose).
GOFILES = $(shell find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*' -not -path './vendor/*')

.PHONY: all build test fmt-check vet unit fuzz bench fmt proto clean

all: build

build:
	$(GO) build -o bin/ ./cmd/kiln ./cmd/kiln-core

test: fmt-check vet unit fuzz

fmt-check:
	@unformatted=$$(gofmt -l $(GOFILES)); \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt: these files are not formatted (run make fmt):"; \
		echo "$$unformatted"; \
		exit 1; \
	fi

vet:
	$(GO) vet ./...

unit:
	$(GO) test $(TESTFLAGS) ./...

fuzz:
	FUZZTIME=$(FUZZTIME) .ci/fuzz

bench:
	$(GO) test -run='^$$' -bench=. $(BENCHFLAGS) ./...

fmt:
	@if command -v gofumpt >/dev/null; then \
		echo gofumpt -w; gofumpt -w $(GOFILES); \
	else \
		echo "gofmt -w (install gofumpt for the stricter style)"; gofmt -w $(GOFILES); \
	fi

# Regenerates the Go code of api/*/*.proto with protoc (Debian's protobuf-compiler) and
# the Go plugins at the versions go.mod pins (its tool directive).
PROTOS = $(wildcard api/*/*.proto)
proto:
	$(GO) build -o bin/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	$(GO) build -o bin/protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc
	protoc -I api \
		--plugin=protoc-gen-go=bin/protoc-gen-go --go_out=api --go_opt=paths=source_relative \
		--plugin=protoc-gen-go-grpc=bin/protoc-gen-go-grpc --go-grpc_out=api --go-grpc_opt=paths=source_relative \
		$(PROTOS)

clean:
	rm -rf bin
