// Package grpcaddr dials kiln's server addresses (parsed by package addr)
// with kiln's message size limits and keepalives.
package grpcaddr

import (
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/kiln-build/kiln/internal/addr"
)

// MaxMessageSize is the largest gRPC message kiln sends or accepts. The
// batch limit advertised in Capabilities stays below it.
const MaxMessageSize = 16 << 20

// Dial parses address (see package addr) and returns a client connection
// with kiln's message size limits. TLS is not implemented yet: grpcs:// is refused.
func Dial(address string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	a, err := addr.Parse(address)
	if err != nil {
		return nil, err
	}
	if a.TLS {
		return nil, fmt.Errorf("address %q: TLS is not supported yet", address)
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
