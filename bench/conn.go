package bench

import (
	"crypto/rand"
	"encoding/hex"

	"google.golang.org/grpc"

	"github.com/kiln-build/kiln/internal/grpcaddr"
)

// connect returns conn if the caller gave one (tests do), or dials server
// with opts. close releases what connect dialed and does nothing otherwise.
func connect(conn grpc.ClientConnInterface, server string, opts ...grpc.DialOption) (c grpc.ClientConnInterface, close func(), err error) {
	if conn != nil {
		return conn, func() {}, nil
	}
	cc, err := grpcaddr.Dial(server, opts...)
	if err != nil {
		return nil, nil, err
	}
	return cc, func() { cc.Close() }, nil
}

// newRunID returns a random id that makes a run's blobs unique.
func newRunID() string {
	var b [8]byte
	rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}
