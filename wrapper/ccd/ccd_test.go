package ccd_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/wrapper/ccd"
)

func frame(payload string) []byte {
	b := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint32(b, uint32(len(payload)))
	copy(b[4:], payload)
	return b
}

func TestRoundTrip(t *testing.T) {
	req := ccd.Request{Version: ccd.Version, Dir: "/src/my project", Env: []string{"A=1", "B=x=y"}, Compiler: "/usr/bin/gcc", Args: []string{"-c", "a b.c", `-DX="q"`}, Umask: 0o22}
	var buf bytes.Buffer
	if err := ccd.Write(&buf, &req); err != nil {
		t.Fatal(err)
	}
	var got ccd.Request
	if err := ccd.Read(&buf, &got); err != nil {
		t.Fatal(err)
	}
	if got.Dir != req.Dir || strings.Join(got.Args, "|") != strings.Join(req.Args, "|") || strings.Join(got.Env, "|") != strings.Join(req.Env, "|") || got.Umask != req.Umask {
		t.Fatalf("got %+v, want %+v", got, req)
	}
}

func TestReadRejects(t *testing.T) {
	huge := make([]byte, 4)
	binary.BigEndian.PutUint32(huge, ccd.MaxMessage+1)
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"Empty", nil, "read message length"},
		{"ShortLength", []byte{0, 0}, "read message length"},
		{"TooLarge", huge, "over the"},
		{"Truncated", frame(`{"exit":1}`)[:8], "read message"},
		{"NotJSON", frame("exit=1"), "decode message"},
		{"WrongType", frame(`{"exit":"one"}`), "decode message"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r ccd.Response
			err := ccd.Read(bytes.NewReader(tc.in), &r)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestSocketPath(t *testing.T) {
	dir := t.TempDir()
	core := filepath.Join(dir, "kiln-core")
	os.WriteFile(core, []byte("v1"), 0o755)
	a, err := ccd.SocketPath(dir, core)
	if err != nil {
		t.Fatal(err)
	}
	// Another binary (an upgrade) gets another daemon.
	os.WriteFile(core, []byte("v2 bigger"), 0o755)
	b, _ := ccd.SocketPath(dir, core)
	if a == b || filepath.Dir(a) != dir {
		t.Fatalf("socket paths %s and %s", a, b)
	}
	if _, err := ccd.SocketPath(strings.Repeat("/d", 60), core); err == nil {
		t.Fatal("accepted a socket path longer than a sockaddr_un holds")
	}
	if _, err := ccd.Dial(filepath.Join(dir, "none.sock")); err != ccd.ErrNoDaemon {
		t.Fatalf("Dial of a missing socket: %v, want ErrNoDaemon", err)
	}
}

func FuzzRead(f *testing.F) {
	f.Add(frame(`{"version":1,"dir":"/x","args":["-c","a.c"]}`))
	f.Add(frame(`{"exit":1,"stdout":"aGk=","local":true}`))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		var req ccd.Request
		if err := ccd.Read(bytes.NewReader(data), &req); err != nil {
			return
		}
		// Whatever decodes must encode and decode to the same request.
		var buf bytes.Buffer
		if err := ccd.Write(&buf, &req); err != nil {
			t.Fatal(err)
		}
		var again ccd.Request
		if err := ccd.Read(&buf, &again); err != nil || again.Dir != req.Dir || len(again.Args) != len(req.Args) {
			t.Fatalf("re-read %+v, %v; want %+v", again, err, req)
		}
	})
}
