// Package addr parses kiln's server addresses. It has no gRPC dependency,
// so that the compiler wrapper's fast path (cmd/kiln) can check its
// configuration without linking gRPC; internal/grpcaddr dials them.
//
// Everywhere in kiln an address is written grpc://host:port (grpcs:// for
// TLS) or as a bare host:port, which means grpc://.
package addr

import (
	"fmt"
	"strings"
)

// Address is a parsed server address.
type Address struct {
	// HostPort is the host:port to dial.
	HostPort string
	// TLS is true for grpcs://.
	TLS bool
}

// Parse parses "grpc://host:port", "grpcs://host:port" or "host:port".
func Parse(s string) (Address, error) {
	a := Address{HostPort: s}
	switch {
	case strings.HasPrefix(s, "grpc://"):
		a.HostPort = strings.TrimPrefix(s, "grpc://")
	case strings.HasPrefix(s, "grpcs://"):
		a.HostPort, a.TLS = strings.TrimPrefix(s, "grpcs://"), true
	case strings.Contains(s, "://"):
		return Address{}, fmt.Errorf("address %q: scheme must be grpc:// or grpcs://", s)
	}
	a.HostPort = strings.TrimSuffix(a.HostPort, "/")
	host, port, ok := splitHostPort(a.HostPort)
	if !ok || host == "" || port == "" {
		return Address{}, fmt.Errorf("address %q: want host:port", s)
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return Address{}, fmt.Errorf("address %q: port %q is not a number", s, port)
		}
	}
	return a, nil
}

// splitHostPort splits "host:port" or "[v6addr]:port" (net.SplitHostPort's
// forms, without importing net: linking it makes cmd/kiln a dynamically
// linked binary that starts slower).
func splitHostPort(hp string) (host, port string, ok bool) {
	if strings.HasPrefix(hp, "[") {
		end := strings.Index(hp, "]:")
		if end < 0 || strings.ContainsAny(hp[end+2:], "[]:") {
			return "", "", false
		}
		return hp[1:end], hp[end+2:], true
	}
	i := strings.LastIndexByte(hp, ':')
	if i < 0 || strings.ContainsAny(hp, "[]") || strings.Count(hp, ":") > 1 {
		return "", "", false
	}
	return hp[:i], hp[i+1:], true
}
