//go:build race

package test

// raceEnabled reports whether this test binary was built with -race. When it is, TestMain
// builds kiln with -race too, so a data race inside the server fails the test that hit it
// (the race detector makes kiln exit non-zero).
const raceEnabled = true
