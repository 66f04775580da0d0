# ckptfs — see README.md.
GO      ?= go
BIN     := bin/ckptfs
MOUNT   ?= /mnt/ckpt
# Tests start and kill real processes: one package at a time, no caching.
TESTFLAGS ?= -count=1 -p 1 -timeout 15m

.PHONY: all build mount test unit vet fuzz bench stress clean

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

# Kill the daemon at STRESS random instants of a checkpoint (and, every
# other round, of a restore) and check each time that nothing was harmed
# (root and /dev/fuse; not part of `make test`). CKPTFS_STRESS_SEED=N
# replays a run's instants.
STRESS ?= 60
stress:
	CKPTFS_STRESS=$(STRESS) $(GO) test -count=1 -p 1 -timeout 60m -run '^TestStressDaemonKill$$' -v ./tests/

clean:
	rm -rf bin
