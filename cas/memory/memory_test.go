package memory_test

import (
	"testing"

	"github.com/kiln-build/kiln/cas"
	"github.com/kiln-build/kiln/cas/memory"
	"github.com/kiln-build/kiln/cas/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, capacity int) cas.BlobStore {
		return memory.New(int64(capacity) * storetest.BlobSize)
	})
}

func BenchmarkMemory(b *testing.B) {
	storetest.Benchmark(b, func(b *testing.B) cas.BlobStore { return memory.New(256 << 20) })
}
