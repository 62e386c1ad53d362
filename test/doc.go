// Package test holds kiln's end-to-end tests: they build the real kiln binary from
// ./cmd/kiln, start it as a separate process on loopback ports, and drive it with real
// clients (Bazel among them). Nothing imports this package; it has only tests.
//
// A test gets a running server from startServer, which also stops it (SIGTERM) when the
// test ends and fails the test if the server does not exit cleanly. The server's log is
// attached to the test's output (shown on failure or with -v).
package test
