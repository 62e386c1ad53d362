package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestStaysSmall guards the reason this command exists: every compiler
// call of a build starts it, so it must not link gRPC, protobuf, a YAML
// library or the net package (which makes the binary dynamically linked);
// each costs milliseconds of start-up per call.
func TestStaysSmall(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"google.golang.org/", "github.com/bazelbuild/", "github.com/spf13/", "github.com/prometheus/", "go.yaml.in/", "gopkg.in/", "net"} {
			if dep == banned || strings.HasPrefix(dep, banned) && strings.HasSuffix(banned, "/") {
				t.Errorf("cmd/kiln links %s", dep)
			}
		}
	}
}
