package worker

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

func TestBuildDirs(t *testing.T) {
	newDirs := func(t *testing.T, n int) *buildDirs {
		work := t.TempDir()
		for _, d := range []string{"build", "spare"} {
			if err := os.Mkdir(filepath.Join(work, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return newBuildDirs(filepath.Join(work, "build"), filepath.Join(work, "spare"), n, slog.New(slog.DiscardHandler))
	}
	// requireFresh checks d's layout: an empty root, empty output files.
	requireFresh := func(t *testing.T, d buildDir, want string) {
		t.Helper()
		if d.dir != want {
			t.Errorf("directory %s, want %s", d.dir, want)
		}
		if ents, err := os.ReadDir(d.root); err != nil || len(ents) != 0 {
			t.Errorf("root: %v, entries %v; want an empty directory", err, ents)
		}
		for _, p := range []string{d.stdout, d.stderr} {
			if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
				t.Errorf("%s: %v; want an empty file", p, err)
			}
		}
	}
	spares := func(b *buildDirs) int {
		ents, _ := os.ReadDir(b.spares.dir)
		return len(ents)
	}

	t.Run("WithoutSparesTakeMakesTheDirectory", func(t *testing.T) {
		b := newDirs(t, 2)
		d, err := b.take("1-lease")
		if err != nil {
			t.Fatal(err)
		}
		requireFresh(t, d, filepath.Join(b.parent, "1-lease"))
		if _, err := b.take("1-lease"); err == nil {
			t.Errorf("a second take of one name succeeded")
		}
	})

	t.Run("SparesAreRenamedIntoPlaceAndMadeAgainByFill", func(t *testing.T) {
		b := newDirs(t, 2)
		requireSpares := func(n int) {
			t.Helper()
			if len(b.spares.ready) != n || spares(b) != n {
				t.Fatalf("%d spares ready, %d on disk; want %d", len(b.spares.ready), spares(b), n)
			}
		}
		b.spares.fill(context.Background())
		requireSpares(2)
		var taken []buildDir
		for _, name := range []string{"1-a", "2-b", "3-c"} { // the third has no spare left
			d, err := b.take(name)
			if err != nil {
				t.Fatal(err)
			}
			requireFresh(t, d, filepath.Join(b.parent, name))
			taken = append(taken, d)
		}
		if n := spares(b); n != 0 {
			t.Errorf("%d spares left on disk, want 0", n)
		}
		b.spares.fill(context.Background())
		requireSpares(2)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		b.take("4-d")
		b.spares.fill(ctx) // ended: makes nothing
		requireSpares(1)
	})
}
