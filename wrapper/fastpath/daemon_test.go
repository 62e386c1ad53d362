package fastpath_test

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
	"github.com/kiln-build/kiln/wrapper/fastpath"
)

// The C client of the kiln cc daemon must speak wrapper/ccd's protocol.

func TestProtocolConstants(t *testing.T) {
	if fastpath.MaxMessage != ccd.MaxMessage || fastpath.AcceptTimeout != ccd.AcceptTimeout {
		t.Fatalf("C: %d bytes, %v; Go: %d bytes, %v", fastpath.MaxMessage, fastpath.AcceptTimeout, ccd.MaxMessage, ccd.AcceptTimeout)
	}
}

func TestSocketPathAgrees(t *testing.T) {
	dir := t.TempDir()
	core := filepath.Join(dir, "kiln-core")
	if err := os.WriteFile(core, []byte("binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(core)
	want, err := ccd.SocketPath(dir, core)
	got, ok := fastpath.SocketPath(dir, core, fi.Size(), fi.ModTime().UnixNano())
	if err != nil || !ok || got != want {
		t.Fatalf("C %q (%v), Go %q (%v)", got, ok, want, err)
	}
	if _, ok := fastpath.SocketPath(strings.Repeat("/d", 60), core, 1, 1); ok {
		t.Fatal("C accepted a socket path longer than a sockaddr_un holds")
	}
}

func TestEncodeRequestAgrees(t *testing.T) {
	for _, req := range []ccd.Request{
		{Dir: "/src/my project", Compiler: "/usr/bin/gcc", Umask: 0o22, Args: []string{"-c", "a b.c", "\xff.c", ""}, Env: []string{"A=1", "L=caf\xe9"}},
		{Dir: "/", Compiler: "/c", Args: []string{}, Env: []string{}},
	} {
		frame, ok := fastpath.EncodeRequest(req.Dir, req.Compiler, req.Umask, req.Args, req.Env)
		if !ok {
			t.Fatal("C did not encode")
		}
		got, err := ccd.ReadRequest(bytes.NewReader(frame))
		req.Version = ccd.Version
		if err != nil || got.Dir != req.Dir || got.Compiler != req.Compiler || got.Umask != req.Umask ||
			!reflect.DeepEqual(got.Args, req.Args) || !reflect.DeepEqual(got.Env, req.Env) {
			t.Fatalf("Go read %+v (%v) from C's %q, want %+v", got, err, frame, req)
		}
	}
}

func answerFrames(accept time.Duration, resp *ccd.Response) []byte {
	var b bytes.Buffer
	if accept > 0 {
		ccd.WriteAccept(&b, accept)
	}
	if resp != nil {
		ccd.WriteResponse(&b, resp)
	}
	return b.Bytes()
}

func TestDecodeAnswerAgrees(t *testing.T) {
	data := answerFrames(1500*time.Millisecond, &ccd.Response{Exit: 3, Local: true, Stdout: []byte("o\x00ut"), Stderr: []byte("warn"), Error: "e"})
	n := binary.BigEndian.Uint32(data)
	a, ok := fastpath.DecodeAnswer(data[4 : 4+n])
	if !ok || a.Kind != 1 || a.Wait != 1500*time.Millisecond {
		t.Fatalf("accept: %+v %v", a, ok)
	}
	rest := data[4+n:]
	a, ok = fastpath.DecodeAnswer(rest[4:])
	if !ok || a != (fastpath.Answer{Kind: 2, Exit: 3, Local: true, Stdout: "o\x00ut", Stderr: "warn", Err: "e"}) {
		t.Fatalf("response: %+v %v", a, ok)
	}
	neg := answerFrames(0, &ccd.Response{Exit: -2})
	if a, ok := fastpath.DecodeAnswer(neg[4:]); !ok || a.Exit != -2 {
		t.Fatalf("negative exit: %+v %v", a, ok)
	}
}

func FuzzDecodeAnswer(f *testing.F) {
	f.Add(answerFrames(0, &ccd.Response{Exit: 1, Stdout: []byte("x")})[4:])
	f.Add(answerFrames(time.Second, nil)[4:])
	f.Add([]byte("R\x00\x00\x00\x00\x02"))
	f.Fuzz(func(t *testing.T, payload []byte) {
		// Go reads the payload as a frame, followed by a valid response
		// in case it is an accept.
		var in bytes.Buffer
		binary.Write(&in, binary.BigEndian, uint32(len(payload)))
		in.Write(payload)
		in.Write(answerFrames(0, &ccd.Response{Exit: 7}))
		resp, goErr := ccd.ReadResponse(&in, func(time.Time) error { return nil }, time.Now)
		a, ok := fastpath.DecodeAnswer(payload)
		if ok != (goErr == nil) {
			t.Fatalf("%q: C ok %v, Go %v", payload, ok, goErr)
		}
		if !ok {
			return
		}
		if a.Kind == 1 {
			if resp.Exit != 7 {
				t.Fatalf("%q: C saw an accept, Go read %+v", payload, resp)
			}
			return
		}
		if a.Exit != resp.Exit || a.Local != resp.Local || a.Stdout != string(resp.Stdout) || a.Stderr != string(resp.Stderr) || a.Err != resp.Error {
			t.Fatalf("%q: C %+v, Go %+v", payload, a, resp)
		}
	})
}
