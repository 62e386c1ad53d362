package disk_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-build/kiln/cas"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/cas/disk"
	"github.com/kiln-build/kiln/cas/storetest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// blockSize is what the store charges per started 4 KiB of file.
const blockSize = 4096

// open creates a store in dir that is closed at the end of the test, and
// checks then that no temporary file is left.
func open(t *testing.T, dir string, maxBytes int64) *disk.Store {
	t.Helper()
	s, err := disk.New(context.Background(), dir, maxBytes, disk.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatalf("New(%s) = %v", dir, err)
	}
	t.Cleanup(func() {
		s.Close()
		requireNoTempFiles(t, dir)
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, capacity int) cas.BlobStore {
		// A BlobSize blob plus trailer fits one block.
		return open(t, t.TempDir(), int64(capacity)*blockSize)
	})
}

// trailer is the documented file trailer for content.
func trailer(content []byte) []byte {
	return binary.LittleEndian.AppendUint32([]byte("kln\x01"), crc32.Checksum(content, crc32.MakeTable(crc32.Castagnoli)))
}

// blobPath is the documented path of a blob.
func blobPath(dir string, d digest.Digest, contentLen int) string {
	name := fmt.Sprintf("%s-%d", d.Hash(), d.Size())
	if int64(contentLen) != d.Size() {
		name += fmt.Sprintf("-%d", contentLen)
	}
	return filepath.Join(dir, d.Function().Name(), d.Hash()[:2], name)
}

func TestLayout(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir, 1<<20)
	sha, shaData := storetest.Blob(1, 100)
	b3Data := []byte("blake3 content")
	b3 := digest.FromBytes(digest.BLAKE3, b3Data)
	ac, _ := storetest.Blob(2, 140)
	acData := []byte("an ActionResult of another length")
	tests := []struct {
		name string
		d    digest.Digest
		data []byte
	}{
		// A CAS blob: {hex}-{size} under sha256/{xx}.
		{"SHA256", sha, shaData},
		// Another function gets its own directory.
		{"BLAKE3", b3, b3Data},
		// Content length differs from the key's size: {hex}-{size}-{len}.
		{"ActionCache", ac, acData},
		// The empty blob is a file holding just the trailer.
		{"Empty", digest.Empty(digest.SHA256), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Put(ctx, tc.d, bytes.NewReader(tc.data)); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(blobPath(dir, tc.d, len(tc.data)))
			if err != nil {
				t.Fatal(err)
			}
			want := append(bytes.Clone(tc.data), trailer(tc.data)...)
			if !bytes.Equal(got, want) {
				t.Fatalf("file = %q, want %q", got, want)
			}
		})
	}
}

// corruptions damage a blob file in the ways a crash or a bad disk does.
var corruptions = []struct {
	name   string
	mutate func(data []byte) []byte
}{
	// A bit flipped in the content.
	{"FlipContent", func(b []byte) []byte { b[len(b)/3] ^= 1; return b }},
	// A bit flipped in the stored CRC.
	{"FlipCRC", func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b }},
	// The magic is wrong.
	{"BadMagic", func(b []byte) []byte { b[len(b)-8] = 'X'; return b }},
	// The last byte is missing.
	{"TruncatedByOne", func(b []byte) []byte { return b[:len(b)-1] }},
	// Half the file is missing.
	{"TruncatedToHalf", func(b []byte) []byte { return b[:len(b)/2] }},
	// Empty file, as after a power loss without fsync.
	{"ZeroLength", func(b []byte) []byte { return nil }},
	// Garbage after the trailer.
	{"ExtraByte", func(b []byte) []byte { return append(b, 0) }},
}

func TestCorruptSmallBlobIsNotFound(t *testing.T) {
	// A small blob is checked before Get returns: never served, removed.
	ctx := context.Background()
	for _, tc := range corruptions {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, 1<<30)
			d, data := storetest.Blob(1, 5000)
			storetest.PutBytes(t, s, d, data)
			corrupt(t, blobPath(dir, d, len(data)), tc.mutate)
			_, err := s.Get(ctx, d)
			wantMsg := fmt.Sprintf("blob %s was corrupt on disk and has been removed: ", d)
			if status.Code(err) != codes.NotFound || !strings.HasPrefix(status.Convert(err).Message(), wantMsg) {
				t.Fatalf("Get of corrupt blob = %v, want NotFound %q...", err, wantMsg)
			}
			requireGone(t, s, dir, d, len(data))
			// It can be uploaded again.
			storetest.PutBytes(t, s, d, data)
			storetest.RequireContent(t, s, d, data)
		})
	}
}

func TestCorruptLargeBlobIsDataLoss(t *testing.T) {
	// A large blob streams; the corruption is reported at the end instead of EOF.
	ctx := context.Background()
	for _, tc := range corruptions {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, 1<<30)
			d, data := storetest.Blob(1, 3<<20)
			storetest.PutBytes(t, s, d, data)
			corrupt(t, blobPath(dir, d, len(data)), tc.mutate)
			_, err := storetest.ReadAll(ctx, s, d)
			wantMsg := fmt.Sprintf("blob %s was corrupt on disk and has been removed: ", d)
			if status.Code(err) != codes.DataLoss || !strings.HasPrefix(status.Convert(err).Message(), wantMsg) {
				t.Fatalf("reading corrupt blob = %v, want DataLoss %q...", err, wantMsg)
			}
			requireGone(t, s, dir, d, len(data))
		})
	}
}

func TestCorruptionCheckSparesNewCopy(t *testing.T) {
	// A reader that finds its file corrupt must not delete a good copy that
	// was uploaded while it was reading.
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir, 1<<30)
	d, data := storetest.Blob(1, 3<<20)
	storetest.PutBytes(t, s, d, data)
	corrupt(t, blobPath(dir, d, len(data)), corruptions[0].mutate)
	rc, err := s.Get(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	storetest.PutBytes(t, s, d, data) // replaces the corrupt file
	if _, err := io.ReadAll(rc); status.Code(err) != codes.DataLoss {
		t.Fatalf("reading the old corrupt file = %v, want DataLoss", err)
	}
	storetest.RequireContent(t, s, d, data)
}

func TestMissingFileIsNotFound(t *testing.T) {
	// A file deleted behind the store's back is a miss and leaves the index.
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir, 1<<30)
	d, data := storetest.Blob(1, 100)
	storetest.PutBytes(t, s, d, data)
	if err := os.Remove(blobPath(dir, d, len(data))); err != nil {
		t.Fatal(err)
	}
	_, err := s.Get(ctx, d)
	want := fmt.Sprintf("blob %s not found: its file was missing", d)
	if status.Code(err) != codes.NotFound || status.Convert(err).Message() != want {
		t.Fatalf("Get = %v, want NotFound %q", err, want)
	}
	storetest.RequireMissing(t, s, []digest.Digest{d}, []digest.Digest{d})
}

func TestFailedPutLeavesNoFile(t *testing.T) {
	// A reader failing midway or a cancelled ctx leaves neither the blob nor
	// a temporary file (open's cleanup checks the latter).
	ctx := context.Background()
	for _, size := range []int{100, 3 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, 1<<30)
			d, data := storetest.Blob(1, size)
			boom := status.Error(codes.Aborted, "client went away")
			err := s.Put(ctx, d, storetest.ErrReaderAfter(data, size-10, boom))
			if err != boom {
				t.Fatalf("Put = %v, want the reader's error %v", err, boom)
			}
			requireNoTempFiles(t, dir)

			cctx, cancel := context.WithCancel(ctx)
			r := io.MultiReader(bytes.NewReader(data[:size/2]), cancelReader(cancel), bytes.NewReader(data[size/2:]))
			if err := s.Put(cctx, d, r); status.Code(err) != codes.Canceled {
				t.Fatalf("cancelled Put = %v, want Canceled", err)
			}
			requireNoTempFiles(t, dir)
			requireGone(t, s, dir, d, size)
		})
	}
}

func TestEvictionDeletesFiles(t *testing.T) {
	// Evicted blobs lose their files; reads and FindMissing refresh recency.
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir, 3*blockSize)
	var ds []digest.Digest
	for i := 0; i < 4; i++ {
		d, data := storetest.Blob(i, 1000)
		ds = append(ds, d)
		if i == 3 {
			mustRead(t, s, ds[0])                                  // 0 is now the newest,
			if _, err := s.FindMissing(ctx, ds[1:2]); err != nil { // then 1
				t.Fatal(err)
			}
		}
		storetest.PutBytes(t, s, d, data)
	}
	// 2 was the least recently used.
	storetest.RequireMissing(t, s, ds, ds[2:3])
	if _, err := os.Stat(blobPath(dir, ds[2], 1000)); !os.IsNotExist(err) {
		t.Fatalf("evicted blob's file: %v, want it gone", err)
	}
	if n := countBlobFiles(t, dir); n != 3 {
		t.Fatalf("%d blob files on disk, want 3", n)
	}
}

func TestConcurrentPutsGetsAndEvictions(t *testing.T) {
	// Racing uploads of the same few digests under heavy eviction keep the
	// index and the directory in agreement: every indexed blob has its file,
	// and every file is indexed.
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir, 8*blockSize)
	const keys = 16
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Go(func() {
			for i := 0; i < 300; i++ {
				d, data := storetest.Blob((i*5+w)%keys, 1000)
				if i%4 == 3 {
					got, err := storetest.ReadAll(ctx, s, d)
					if err != nil && status.Code(err) != codes.NotFound || err == nil && !bytes.Equal(got, data) {
						t.Errorf("Get(%s) = %v", d, err)
					}
					continue
				}
				if err := s.Put(ctx, d, bytes.NewReader(data)); err != nil {
					t.Errorf("Put(%s) = %v", d, err)
				}
			}
		})
	}
	wg.Wait()
	var all []digest.Digest
	for k := 0; k < keys; k++ {
		d, _ := storetest.Blob(k, 1000)
		all = append(all, d)
	}
	missing, _ := s.FindMissing(ctx, all)
	present := 0
	for _, d := range all {
		if !contains(missing, d) {
			present++
			_, data := storetest.Blob(indexOf(all, d), 1000)
			storetest.RequireContent(t, s, d, data)
		}
	}
	if n := countBlobFiles(t, dir); n != present {
		t.Fatalf("%d blob files on disk, %d blobs indexed", n, present)
	}
}

func TestRestart(t *testing.T) {
	ctx := context.Background()
	t.Run("KeepsEveryBlob", func(t *testing.T) {
		// Blobs of every kind survive Close and New, with the right content.
		dir := t.TempDir()
		s := open(t, dir, 1<<30)
		type blob struct {
			d    digest.Digest
			data []byte
		}
		var blobs []blob
		for i := 0; i < 500; i++ {
			d, data := storetest.Blob(i, i*37%5000)
			blobs = append(blobs, blob{d, data})
		}
		ac, _ := storetest.Blob(1000, 77)
		blobs = append(blobs, blob{ac, []byte("action result")})
		big, bigData := storetest.Blob(1001, 2<<20)
		blobs = append(blobs, blob{big, bigData})
		b3 := []byte("blake3")
		blobs = append(blobs, blob{digest.FromBytes(digest.BLAKE3, b3), b3})
		for _, b := range blobs {
			storetest.PutBytes(t, s, b.d, b.data)
		}
		s.Close()
		s = open(t, dir, 1<<30)
		for _, b := range blobs {
			storetest.RequireContent(t, s, b.d, b.data)
		}
	})

	for _, withSnapshot := range []bool{true, false} {
		t.Run(fmt.Sprintf("RecencyOrder/snapshot=%v", withSnapshot), func(t *testing.T) {
			// With the snapshot, the order of reads before a restart decides
			// eviction after it.
			dir := t.TempDir()
			s := open(t, dir, 4*blockSize)
			var ds []digest.Digest
			for i := 0; i < 4; i++ {
				d, data := storetest.Blob(i, 1000)
				ds = append(ds, d)
				storetest.PutBytes(t, s, d, data)
			}
			// Order, oldest first: 2 0 3 1.
			for _, i := range []int{0, 3, 1} {
				mustRead(t, s, ds[i])
			}
			s.Close()
			if _, err := os.Stat(filepath.Join(dir, "lru-snapshot")); err != nil {
				t.Fatalf("no snapshot after Close: %v", err)
			}
			if !withSnapshot {
				os.Remove(filepath.Join(dir, "lru-snapshot")) // as after a crash
			}
			s = open(t, dir, 4*blockSize)
			if _, err := os.Stat(filepath.Join(dir, "lru-snapshot")); !os.IsNotExist(err) {
				t.Fatalf("snapshot still there after New: %v", err)
			}
			storetest.RequireMissing(t, s, ds, nil)
			if !withSnapshot {
				return // order is arbitrary
			}
			// FindMissing above touched them all in order: 0 1 2 3. Read 0
			// and 1 again, then add two blobs: 2 and 3 go.
			mustRead(t, s, ds[0])
			mustRead(t, s, ds[1])
			for i := 4; i < 6; i++ {
				d, data := storetest.Blob(i, 1000)
				storetest.PutBytes(t, s, d, data)
			}
			storetest.RequireMissing(t, s, ds, ds[2:4])
		})
	}

	t.Run("SnapshotOrderApplied", func(t *testing.T) {
		// The restored order is the pre-restart one, not the listing order.
		dir := t.TempDir()
		s := open(t, dir, 4*blockSize)
		var ds []digest.Digest
		for i := 0; i < 4; i++ {
			d, data := storetest.Blob(i, 1000)
			ds = append(ds, d)
			storetest.PutBytes(t, s, d, data)
		}
		mustRead(t, s, ds[0]) // oldest first: 1 2 3 0
		s.Close()
		s = open(t, dir, 4*blockSize)
		d, data := storetest.Blob(9, 1000)
		storetest.PutBytes(t, s, d, data)
		storetest.RequireMissing(t, s, ds, ds[1:2])
	})

	t.Run("CleansUp", func(t *testing.T) {
		// Temporary files are removed, strange names left alone, and a
		// damaged snapshot ignored.
		dir := t.TempDir()
		s := open(t, dir, 1<<30)
		d, data := storetest.Blob(1, 10)
		storetest.PutBytes(t, s, d, data)
		s.Close()
		shard := filepath.Dir(blobPath(dir, d, 10))
		write(t, filepath.Join(shard, "tmp-42"), []byte("half an upload"))
		write(t, filepath.Join(dir, "tmp-lru-snapshot"), []byte("half a snapshot"))
		write(t, filepath.Join(shard, "README"), []byte("not a blob"))
		write(t, filepath.Join(dir, "lru-snapshot"), []byte("kilnlru1 garbage"))
		s = open(t, dir, 1<<30)
		storetest.RequireContent(t, s, d, data)
		for _, name := range []string{filepath.Join(shard, "tmp-42"), filepath.Join(dir, "tmp-lru-snapshot"), filepath.Join(dir, "lru-snapshot")} {
			if _, err := os.Stat(name); !os.IsNotExist(err) {
				t.Errorf("%s: %v, want it removed", name, err)
			}
		}
		if _, err := os.Stat(filepath.Join(shard, "README")); err != nil {
			t.Errorf("unexpected file was touched: %v", err)
		}
	})

	t.Run("LowerLimitEvicts", func(t *testing.T) {
		// Reopening with a smaller limit evicts down to it.
		dir := t.TempDir()
		s := open(t, dir, 1<<30)
		for i := 0; i < 10; i++ {
			d, data := storetest.Blob(i, 1000)
			storetest.PutBytes(t, s, d, data)
		}
		s.Close()
		open(t, dir, 4*blockSize)
		if n := countBlobFiles(t, dir); n != 4 {
			t.Fatalf("%d blob files after reopening with room for 4", n)
		}
	})

	t.Run("DirectoryIsLocked", func(t *testing.T) {
		// Two stores on one directory would corrupt each other's index.
		dir := t.TempDir()
		open(t, dir, 1<<20)
		_, err := disk.New(ctx, dir, 1<<20, disk.WithLogger(testLogger(t)))
		want := fmt.Sprintf("disk store %s is in use by another process", dir)
		if status.Code(err) != codes.FailedPrecondition || status.Convert(err).Message() != want {
			t.Fatalf("second New = %v, want FailedPrecondition %q", err, want)
		}
	})
}

func TestClosedStoreIsUnavailable(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir, 1<<20)
	d, data := storetest.Blob(1, 10)
	s.Close()
	want := fmt.Sprintf("disk store %s is closed", dir)
	for name, err := range map[string]error{
		"Put": s.Put(ctx, d, bytes.NewReader(data)),
		"Get": func() error { _, err := s.Get(ctx, d); return err }(),
		"FindMissing": func() error {
			_, err := s.FindMissing(ctx, []digest.Digest{d})
			return err
		}(),
	} {
		if status.Code(err) != codes.Unavailable || !strings.HasSuffix(status.Convert(err).Message(), want) {
			t.Errorf("%s after Close = %v, want Unavailable %q", name, err, want)
		}
	}
}

func TestDiskFull(t *testing.T) {
	// A full filesystem is ResourceExhausted naming the file, leaves no
	// temporary file, and reads keep working.
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	ctx := context.Background()
	dir := mountTmpfs(t, "1m")
	s := open(t, dir, 1<<30) // the index thinks there is plenty of room
	small, smallData := storetest.Blob(1, 1000)
	storetest.PutBytes(t, s, small, smallData)
	for _, size := range []int{2 << 20, 1 << 20} {
		d, data := storetest.Blob(size, size)
		err := s.Put(ctx, d, bytes.NewReader(data))
		msg := status.Convert(err).Message()
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(msg, "no space left on device") || !strings.Contains(msg, dir) {
			t.Fatalf("Put of %d bytes on a full disk = %v, want ResourceExhausted naming the file", size, err)
		}
		t.Logf("Put on a full disk: %v", err)
		requireNoTempFiles(t, dir)
		storetest.RequireContent(t, s, small, smallData)
		storetest.RequireMissing(t, s, []digest.Digest{d}, []digest.Digest{d})
	}
	// The space came back: a blob that fits can still be stored.
	d, data := storetest.Blob(7, 100<<10)
	storetest.PutBytes(t, s, d, data)
}

// --- helpers ---

// testLogger sends the store's log to the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := mount("tmpfs", dir, "tmpfs", "size="+size); err != nil {
		t.Skipf("cannot mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unmount(dir) })
	return dir
}

func mustRead(t *testing.T, s cas.BlobStore, d digest.Digest) []byte {
	t.Helper()
	b, err := storetest.ReadAll(context.Background(), s, d)
	if err != nil {
		t.Fatalf("Get(%s) = %v", d, err)
	}
	return b
}

func corrupt(t *testing.T, path string, mutate func([]byte) []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	write(t, path, mutate(data))
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// requireGone checks that d is neither indexed nor on disk.
func requireGone(t *testing.T, s cas.BlobStore, dir string, d digest.Digest, contentLen int) {
	t.Helper()
	if _, err := os.Stat(blobPath(dir, d, contentLen)); !os.IsNotExist(err) {
		t.Fatalf("file of %s: %v, want it removed", d, err)
	}
	storetest.RequireMissing(t, s, []digest.Digest{d}, []digest.Digest{d})
}

func requireNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(e.Name(), "tmp-") {
			t.Errorf("temporary file left behind: %s", path)
		}
		return nil
	})
}

func countBlobFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() && strings.Count(strings.TrimPrefix(path, dir), "/") == 3 {
			n++
		}
		return nil
	})
	return n
}

func contains(ds []digest.Digest, d digest.Digest) bool { return indexOf(ds, d) >= 0 }

func indexOf(ds []digest.Digest, d digest.Digest) int {
	for i, x := range ds {
		if x == d {
			return i
		}
	}
	return -1
}

type cancelReader func()

func (c cancelReader) Read([]byte) (int, error) { c(); return 0, io.EOF }

func TestStartupReadsOnlyCanonicalNames(t *testing.T) {
	// The index is rebuilt from names alone, so New accepts exactly the names
	// Put makes, and leaves anything else alone.
	d, _ := storetest.Blob(1, 5)
	h := d.Hash()
	tests := []struct {
		name    string // file name in d's shard
		indexed bool
	}{
		// Content length equal to the size.
		{h + "-5", true},
		// Action-cache entry with its own content length.
		{h + "-5-17", true},
		// The third field repeating the size is not canonical.
		{h + "-5-5", false},
		// Uppercase hex.
		{strings.ToUpper(h) + "-5", false},
		// Leading zero in the size.
		{h + "-05", false},
		// Negative size.
		{h + "--5", false},
		// Hash one digit short.
		{h[1:] + "-5", false},
		// No size.
		{h, false},
		// Trailing garbage.
		{h + "-5-17-1", false},
		// Not even hex.
		{"zz" + h[2:] + "-5", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "sha256", h[:2], tc.name)
			os.MkdirAll(filepath.Dir(path), 0o755)
			write(t, path, trailer(nil))
			s := open(t, dir, 1<<20)
			missing, _ := s.FindMissing(context.Background(), []digest.Digest{d})
			if indexed := len(missing) == 0; indexed != tc.indexed {
				t.Fatalf("indexed = %v, want %v", indexed, tc.indexed)
			}
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("New touched the file: %v", err)
			}
		})
	}
}

func TestSnapshotReconciledWithDirectory(t *testing.T) {
	// Between Close and New: blob 1's file vanishes, an unknown blob appears,
	// and an action-cache entry gets content of another length.
	ctx := context.Background()
	var ds []digest.Digest
	ac, _ := storetest.Blob(99, 10)
	extra, extraData := storetest.Blob(50, 1000)
	newResult := []byte("a longer, newer result")
	setup := func(t *testing.T) *disk.Store {
		dir := t.TempDir()
		s := open(t, dir, 5*blockSize)
		ds = nil
		for i := 0; i < 4; i++ {
			d, data := storetest.Blob(i, 1000)
			ds = append(ds, d)
			storetest.PutBytes(t, s, d, data)
		}
		storetest.PutBytes(t, s, ac, []byte("old result"))
		// Order, oldest first: 0 1 2 3 ac.
		s.Close()
		os.Remove(blobPath(dir, ds[1], 1000))
		os.MkdirAll(filepath.Dir(blobPath(dir, extra, 1000)), 0o755)
		write(t, blobPath(dir, extra, 1000), append(bytes.Clone(extraData), trailer(extraData)...))
		os.Remove(blobPath(dir, ac, len("old result")))
		write(t, blobPath(dir, ac, len(newResult)), append(bytes.Clone(newResult), trailer(newResult)...))
		return open(t, dir, 5*blockSize)
	}

	t.Run("Content", func(t *testing.T) {
		// The directory wins: 1 is gone, the others read back as on disk.
		s := setup(t)
		storetest.RequireMissing(t, s, []digest.Digest{ds[1]}, []digest.Digest{ds[1]})
		storetest.RequireContent(t, s, extra, extraData)
		storetest.RequireContent(t, s, ac, newResult)
		mustRead(t, s, ds[3])
	})

	t.Run("Order", func(t *testing.T) {
		// Blobs unknown to the snapshot (extra, and ac with its new length)
		// are the least recently used; the rest keep the snapshot's order.
		s := setup(t)
		for i := 10; i < 13; i++ {
			d, data := storetest.Blob(i, 1000)
			storetest.PutBytes(t, s, d, data)
		}
		// Three blobs in, three out: extra, ac, then 0.
		missing, _ := s.FindMissing(ctx, []digest.Digest{extra, ac, ds[0], ds[2], ds[3]})
		if want := []digest.Digest{extra, ac, ds[0]}; fmt.Sprint(missing) != fmt.Sprint(want) {
			t.Fatalf("missing after eviction = %v, want %v", missing, want)
		}
	})
}
