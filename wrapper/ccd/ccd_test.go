package ccd_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/wrapper/ccd"
)

func frame(payload string) []byte {
	b := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint32(b, uint32(len(payload)))
	copy(b[4:], payload)
	return b
}

func noDeadline(time.Time) error { return nil }

func TestRoundTrip(t *testing.T) {
	// Arguments and environment that are not UTF-8 travel unchanged.
	req := ccd.Request{Version: ccd.Version, Dir: "/src/my project", Env: []string{"A=1", "B=x=y", "L=caf\xe9"}, Compiler: "/usr/bin/gcc", Args: []string{"-c", "a b.c", `-DX="q"`, "\xff\xfe.c", ""}, Umask: 0o22}
	var buf bytes.Buffer
	if err := ccd.WriteRequest(&buf, &req); err != nil {
		t.Fatal(err)
	}
	got, err := ccd.ReadRequest(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, req) {
		t.Fatalf("got %+v, want %+v", got, req)
	}
	for _, resp := range []ccd.Response{
		{Exit: 1, Stdout: []byte("out\xff"), Stderr: []byte("warning"), Local: true},
		{Exit: -1, Error: "refused"},
		{Stdout: []byte{}, Stderr: []byte{}},
	} {
		buf.Reset()
		if err := ccd.WriteAccept(&buf, 3*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := ccd.WriteResponse(&buf, &resp); err != nil {
			t.Fatal(err)
		}
		var waits []time.Duration
		now := time.Unix(100, 0)
		got, err := ccd.ReadResponse(&buf, func(d time.Time) error { waits = append(waits, d.Sub(now)); return nil }, func() time.Time { return now })
		if err != nil || got.Exit != resp.Exit || got.Local != resp.Local || string(got.Stdout) != string(resp.Stdout) || string(got.Stderr) != string(resp.Stderr) || got.Error != resp.Error {
			t.Fatalf("got %+v %v, want %+v", got, err, resp)
		}
		if !reflect.DeepEqual(waits, []time.Duration{ccd.AcceptTimeout, 3 * time.Second}) {
			t.Fatalf("deadlines %v", waits)
		}
	}
}

func TestReadRejects(t *testing.T) {
	huge := make([]byte, 4)
	binary.BigEndian.PutUint32(huge, ccd.MaxMessage+1)
	resp := func(tail string) []byte { return frame("R\x00\x00\x00\x01" + tail) }
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"Empty", nil, "read message length"},
		{"ShortLength", []byte{0, 0}, "read message length"},
		{"TooLarge", huge, "over the"},
		{"Truncated", resp("\x00")[:8], "read message"},
		{"UnknownKind", frame("Zhello"), "unknown kind"},
		{"EmptyPayload", frame(""), "too short"},
		{"ShortResponse", resp("\x00\x00\x00\x00\x05ab"), "too short"},
		{"BadLocal", resp("\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), "neither 0 nor 1"},
		{"TrailingBytes", resp("\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00!"), "after the message"},
		{"StringPastEnd", resp("\x00\xff\xff\xff\xff"), "too short"},
		{"AcceptTwice", append(frame("A\x00\x00\x00\x01"), frame("A\x00\x00\x00\x01")...), "accepted twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ccd.ReadResponse(bytes.NewReader(tc.in), noDeadline, time.Now)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	// Requests: another version is told apart from garbage.
	var buf bytes.Buffer
	ccd.WriteRequest(&buf, &ccd.Request{Version: 1, Dir: "/"})
	if _, err := ccd.ReadRequest(&buf); err == nil || !strings.Contains(err.Error(), "protocol version 1") {
		t.Fatalf("old version: %v", err)
	}
	for _, in := range [][]byte{frame(`{"version":1}`), frame("\x00\x00\x00\x02\xff\xff\xff\xff"), frame("\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x7f\xff\xff\xff")} {
		if _, err := ccd.ReadRequest(bytes.NewReader(in)); err == nil {
			t.Fatalf("%q decoded", in)
		}
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

func FuzzReadRequest(f *testing.F) {
	var buf bytes.Buffer
	ccd.WriteRequest(&buf, &ccd.Request{Version: ccd.Version, Dir: "/x", Args: []string{"-c", "a.c"}, Env: []string{"A=1"}})
	f.Add(buf.Bytes())
	f.Add(frame(`{"version":1}`))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := ccd.ReadRequest(bytes.NewReader(data))
		if err != nil {
			return
		}
		// Whatever decodes must encode to the same bytes.
		var buf bytes.Buffer
		if err := ccd.WriteRequest(&buf, req); err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(data, buf.Bytes()) {
			t.Fatalf("re-encoded %q from %q", buf.Bytes(), data)
		}
	})
}

func FuzzReadResponse(f *testing.F) {
	var buf bytes.Buffer
	ccd.WriteAccept(&buf, time.Second)
	ccd.WriteResponse(&buf, &ccd.Response{Exit: 1, Stdout: []byte("hi"), Local: true})
	f.Add(buf.Bytes())
	f.Add(frame("R"))
	f.Fuzz(func(t *testing.T, data []byte) {
		resp, err := ccd.ReadResponse(bytes.NewReader(data), noDeadline, time.Now)
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := ccd.WriteResponse(&out, resp); err != nil {
			t.Fatal(err)
		}
		again, err := ccd.ReadResponse(&out, noDeadline, time.Now)
		if err != nil || !reflect.DeepEqual(again, resp) {
			t.Fatalf("re-read %+v, %v; want %+v", again, err, resp)
		}
	})
}
