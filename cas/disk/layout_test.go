package disk_test

import (
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/cas/disk"
)

// FuzzFileName checks that blob file names are canonical: every name that
// parses is exactly the name made for what it parses to, so one blob never
// has two names and the index rebuilt from names matches what Put wrote.
func FuzzFileName(f *testing.F) {
	h := digest.FromBytes(digest.SHA256, []byte("x")).Hash()
	for _, seed := range []string{h + "-1", h + "-1-7", h + "-0", h + "-1-1", h + "-01", "tmp-3", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		raw, size, n, ok := disk.ParseFileName(name, 32)
		if !ok {
			return
		}
		d := digest.FromHash(digest.SHA256, raw[:32], size)
		if got := string(disk.AppendFileName(nil, d, n)); got != name {
			t.Fatalf("%q parses to (%s, %d) whose name is %q", name, d, n, got)
		}
	})
}

// FuzzSnapshot checks that a damaged snapshot is rejected, never a panic:
// New reads whatever file it finds. The fuzzer supplies the entries; the
// test adds the header and a valid CRC so that the parser gets past them.
func FuzzSnapshot(f *testing.F) {
	d := digest.FromBytes(digest.SHA256, []byte("x"))
	f.Add(append(append([]byte{1}, d.RawHash()...), 1, 1))
	f.Add([]byte{27, 5})
	f.Fuzz(func(t *testing.T, body []byte) {
		data := append([]byte("kilnlru1"), body...)
		data = binary.LittleEndian.AppendUint32(data, crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)))
		disk.ParseSnapshot(data)
	})
}
