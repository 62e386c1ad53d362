package main

import (
	"runtime"
	"testing"

	"github.com/kiln-build/kiln/api/workerpb"
)

func TestWithSandboxProperties(t *testing.T) {
	sandbox := []*workerpb.Property{
		{Name: "network", Value: "off"}, {Name: "sandbox", Value: "hermetic"}, {Name: "sandbox", Value: "host"},
	}
	os := "OSFamily=" + runtime.GOOS + ",ISA=" + isaName(runtime.GOARCH)
	for _, tc := range []struct {
		name  string
		flags []string
		want  string
	}{
		// sandbox=host is a default already: not twice.
		{"Defaults", nil, os + ",sandbox=host,network=off,sandbox=hermetic"},
		// --platform sandbox=host keeps hermetic actions away.
		{"OperatorChoosesTheModes", []string{"sandbox=host"}, os + ",sandbox=host,network=off"},
		{"OperatorChoosesTheNetwork", []string{"network=on"}, os + ",sandbox=host,network=on,sandbox=hermetic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			extra, err := parsePlatformFlags(tc.flags)
			if err != nil {
				t.Fatal(err)
			}
			if got := formatProperties(withSandboxProperties(defaultWorkerProperties(extra), extra, sandbox)); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}
