// Package tests holds the integration tests of ckptfs: they build the real
// binary and the C workloads under workload/, mount the filesystem for real,
// start process trees and compare what ckptfs reports with /proc.
//
// They need root and /dev/fuse; without them they are skipped, unless
// CKPTFS_REQUIRE_ROOT=1 (set by CI), which turns the skip into a failure.
// Run them one package at a time: go test -count=1 -p 1 ./tests/
// CKPTFS_TEST_DEBUG=1 mounts with --debug (every FUSE request in the log).
//
// The crash tests (crash_test.go) kill the daemon at every instant of a
// checkpoint or restore (CKPTFS_FAULT fault points, or SIGKILL from the
// test) and check with a self-checking workload (workload/sentinel.c) that
// nothing was harmed. CKPTFS_STRESS=N runs TestStressDaemonKill, N kills
// at random instants (make stress).
package tests
