// Package grpcaddr parses kiln's server addresses and dials them.
//
// Everywhere in kiln an address is written grpc://host:port (grpcs:// for
// TLS) or as a bare host:port, which means grpc://.
package grpcaddr

import (
	"fmt"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// MaxMessageSize is the largest gRPC message kiln sends or accepts. The
// batch limit advertised in Capabilities stays below it.
const MaxMessageSize = 16 << 20

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
	host, port, err := net.SplitHostPort(a.HostPort)
	if err != nil {
		return Address{}, fmt.Errorf("address %q: %w", s, err)
	}
	if host == "" || port == "" {
		return Address{}, fmt.Errorf("address %q: want host:port", s)
	}
	return a, nil
}

// Dial parses addr and returns a client connection with kiln's message size
// limits. TLS is not implemented yet: grpcs:// is refused.
func Dial(addr string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	a, err := Parse(addr)
	if err != nil {
		return nil, err
	}
	if a.TLS {
		return nil, fmt.Errorf("address %q: TLS is not supported yet", addr)
	}
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize)),
		// Pings find a server that hangs or a connection that NAT dropped
		// while a long-lived stream (a worker session) is idle.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
	}
	return grpc.NewClient(a.HostPort, append(base, opts...)...)
}
