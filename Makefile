# ckptfs — see README.md.
GO      ?= go
BIN     := bin/ckptfs
MOUNT   ?= /mnt/ckpt
# Tests start and kill real processes: one package at a time, no caching.
TESTFLAGS ?= -count=1 -p 1 -timeout 15m

.PHONY: all build mount test unit vet fuzz bench clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/ckptfs

# Build, then serve $(MOUNT) in the foreground (Ctrl-C unmounts).
mount: build
	./$(BIN) mount $(MOUNT)

vet:
	@out=$$(gofmt -l cmd fs image checkpoint restart internal tests); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Unit tests, fuzz seed corpora, and the integration tests (root and
# /dev/fuse; CKPTFS_REQUIRE_ROOT=1 turns their skip into a failure).
test: vet
	$(GO) test $(TESTFLAGS) ./...

unit:
	$(GO) test -count=1 ./image/... ./restart/... ./internal/... ./checkpoint/...

FUZZTIME ?= 2m
fuzz:
	$(GO) test -run '^$$' -fuzz=FuzzReadAny -fuzztime=$(FUZZTIME) ./image

bench: build
	$(GO) test -run '^$$' -bench . -benchtime=1x -count=1 ./tests/

clean:
	rm -rf bin
