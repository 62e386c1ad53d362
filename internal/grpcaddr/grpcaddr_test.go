package grpcaddr_test

import (
	"testing"

	"github.com/kiln-build/kiln/internal/grpcaddr"
)

func TestDialRefusesTLS(t *testing.T) {
	if _, err := grpcaddr.Dial("grpcs://x:1"); err == nil {
		t.Error("Dial accepted TLS, which is not implemented")
	}
}
