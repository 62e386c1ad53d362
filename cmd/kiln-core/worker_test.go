package main

import (
	"runtime"
	"testing"

	"github.com/kiln-build/kiln/api/workerpb"
)

func TestWorkerProperties(t *testing.T) {
	format := func(ps []*workerpb.Property) string { return formatProperties(ps) }
	for _, tc := range []struct {
		name  string
		flags []string
		want  string
	}{
		{"Defaults", nil, "OSFamily=" + runtime.GOOS + ",ISA=" + isaName(runtime.GOARCH) + ",sandbox=host"},
		// A flag replaces the default of its name; several values are allowed.
		{"Override", []string{"sandbox=hermetic", "gpu=a100", "gpu=h100"}, "OSFamily=" + runtime.GOOS + ",ISA=" + isaName(runtime.GOARCH) + ",sandbox=hermetic,gpu=a100,gpu=h100"},
		{"EmptyValue", []string{"network="}, "OSFamily=" + runtime.GOOS + ",ISA=" + isaName(runtime.GOARCH) + ",sandbox=host,network="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			extra, err := parsePlatformFlags(tc.flags)
			if err != nil {
				t.Fatal(err)
			}
			if got := format(defaultWorkerProperties(extra)); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
	for _, bad := range []string{"novalue", "=x"} {
		if _, err := parsePlatformFlags([]string{bad}); err == nil {
			t.Errorf("--platform %q accepted", bad)
		}
	}
	if isaName("amd64") != "x86-64" || isaName("arm64") != "aarch64" {
		t.Error("ISA names")
	}
}
