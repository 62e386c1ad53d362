package test

import (
	"testing"
)

// TestBazelRemoteExecution builds and tests the C++ workspace with real Bazel executing every
// action on kiln (the server's in-process worker, in host mode: Bazel's auto-configured
// toolchain calls /usr/bin/gcc, and its test runner needs sed, date and expr), then wipes
// Bazel's local outputs and checks that the rebuild is served entirely from kiln's action
// cache.
func TestBazelRemoteExecution(t *testing.T) {
	bin := requireBazel(t)
	// The embedded default configuration: the in-process worker is on.
	s := startServer(t)
	// After startServer, so that its cleanup (Bazel's shutdown) runs before kiln stops.
	b := newBazel(t, bin)

	flags := []string{
		"//...",
		"--remote_executor=" + s.GRPCURL(),
		"--remote_instance_name=" + bazelInstanceName,
		"--spawn_strategy=remote",
		"--noremote_local_fallback",
		"--incompatible_strict_action_env",
		"--remote_default_exec_properties=OSFamily=linux",
		// bazelbuild/bazel#14426: the separate test.xml action has the test's duration in
		// its key and so misses after a cached test.
		"--noexperimental_split_xml_generation",
		"--nosandbox_debug",
		"--jobs=2",
		"--test_output=errors",
		"--verbose_failures",
		"--color=no",
		"--curses=no",
	}

	// First run: every action that is not internal must run remotely, on kiln.
	out := b.mustRun("test", flags...)
	first := mustParseSummary(t, out)
	t.Logf("first run: %s", first.Line)
	checkNoRemoteCacheWarnings(t, out)
	if first.ByKind["remote"] == 0 {
		t.Errorf("first run executed nothing remotely: %s", first.Line)
	}
	for kind, n := range first.ByKind {
		if kind != "internal" && kind != "remote" {
			t.Errorf("first run: %d processes were %q, want every non-internal process to be %q: %s",
				n, kind, "remote", first.Line)
		}
	}
	if t.Failed() {
		t.Logf("bazel output of the first run:\n%s", out)
	}

	b.mustRun("clean")

	// Second run: the results of the first are in kiln's action cache.
	out = b.mustRun("test", flags...)
	second := mustParseSummary(t, out)
	t.Logf("second run after bazel clean: %s", second.Line)
	checkNoRemoteCacheWarnings(t, out)
	requireAllHits(t, second, first.ByKind["remote"], first.Line, out)
	// The binary was linked on the worker and downloaded from kiln; it must run here.
	requireHelloRuns(t, b.workspace)
}
