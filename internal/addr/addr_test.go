package addr_test

import (
	"testing"

	"github.com/kiln-build/kiln/internal/addr"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in       string
		hostPort string
		tls      bool
		ok       bool
	}{
		{"grpc://127.0.0.1:8980", "127.0.0.1:8980", false, true},
		{"grpcs://build.example:443", "build.example:443", true, true},
		{"localhost:8980", "localhost:8980", false, true},
		{"grpc://[::1]:8980/", "[::1]:8980", false, true},
		{"http://x:1", "", false, false},
		{"grpc://nohost", "", false, false},
		{"grpc://:8980", "", false, false},
		{"host:", "", false, false},
		{"", "", false, false},
		{"grpc://host:port", "", false, false},
		{"::1:8980", "", false, false},
		{"[::1]8980", "", false, false},
		{"[::1]:89:80", "", false, false},
		{"a[b]:1", "", false, false},
	} {
		a, err := addr.Parse(tc.in)
		if tc.ok != (err == nil) || (err == nil && (a.HostPort != tc.hostPort || a.TLS != tc.tls)) {
			t.Errorf("Parse(%q) = %+v, %v", tc.in, a, err)
		}
	}
}
