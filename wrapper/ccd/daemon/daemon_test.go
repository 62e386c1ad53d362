package daemon_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/wrapper/ccd"
	"github.com/kiln-build/kiln/wrapper/ccd/daemon"
	"github.com/kiln-build/kiln/wrapper/stats"
)

// start runs a daemon in dir until the test ends; the returned channel
// gets Serve's result.
func start(t *testing.T, dir string, idle time.Duration) (*daemon.Daemon, <-chan error) {
	t.Helper()
	d := &daemon.Daemon{Socket: filepath.Join(dir, "d.sock"), CacheDir: dir, Idle: idle, Log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() { done <- d.Serve(ctx); close(finished) }()
	t.Cleanup(func() { cancel(); <-finished })
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := ccd.Dial(d.Socket)
		if err == nil {
			c.Close()
			return d, done
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not listening: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func call(t *testing.T, sock string, req *ccd.Request) *ccd.Response {
	t.Helper()
	c, err := ccd.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ccd.Call(c, req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestOneDaemonPerSocket(t *testing.T) {
	dir := t.TempDir()
	d, _ := start(t, dir, time.Minute)
	second := &daemon.Daemon{Socket: d.Socket, CacheDir: dir, Idle: time.Minute, Log: slog.New(slog.DiscardHandler)}
	if err := second.Serve(context.Background()); !errors.Is(err, daemon.ErrRunning) {
		t.Fatalf("second daemon: %v, want ErrRunning", err)
	}
	// The first one still serves.
	c, err := ccd.Dial(d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestExits(t *testing.T) {
	t.Run("SocketRemoved", func(t *testing.T) {
		d, done := start(t, t.TempDir(), time.Hour)
		os.Remove(d.Socket)
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("daemon still running after its socket was removed")
		}
	})
	t.Run("Idle", func(t *testing.T) {
		d, done := start(t, t.TempDir(), time.Second)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("daemon still running after its idle time")
		}
		if _, err := os.Stat(d.Socket); !os.IsNotExist(err) {
			t.Fatalf("socket left behind: %v", err)
		}
	})
}

func TestBadRequests(t *testing.T) {
	dir := t.TempDir()
	d, _ := start(t, dir, time.Minute)
	env := []string{"XDG_CONFIG_HOME=" + dir, "PATH=/usr/bin:/bin"}
	for _, tc := range []struct {
		name string
		req  ccd.Request
		want string
	}{
		{"RelativeDir", ccd.Request{Dir: "src", Compiler: "/usr/bin/gcc", Env: env}, "absolute"},
		{"RelativeCompiler", ccd.Request{Dir: dir, Compiler: "gcc", Env: env}, "absolute"},
		{"BadConfig", ccd.Request{Dir: dir, Compiler: "/usr/bin/gcc", Env: append(env, "KILN_SERVER=http://x:1")}, "scheme"},
		{"DaemonOff", ccd.Request{Dir: dir, Compiler: "/usr/bin/gcc", Env: append(env, "KILN_DAEMON=false")}, "turned off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if resp := call(t, d.Socket, &tc.req); !strings.Contains(resp.Error, tc.want) {
				t.Fatalf("response %+v, want an error containing %q", resp, tc.want)
			}
		})
	}
	t.Run("OtherVersion", func(t *testing.T) {
		c, err := ccd.Dial(d.Socket)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ccd.WriteRequest(c, &ccd.Request{Version: ccd.Version + 1, Dir: dir, Compiler: "/usr/bin/gcc"})
		resp, err := ccd.ReadResponse(c, c.SetReadDeadline, time.Now)
		if err != nil || !strings.Contains(resp.Error, "version") {
			t.Fatalf("response %+v, %v", resp, err)
		}
	})
	t.Run("Garbage", func(t *testing.T) {
		c, err := ccd.Dial(d.Socket)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'})
		resp, err := ccd.ReadResponse(c, c.SetReadDeadline, time.Now)
		if err != nil || resp.Error == "" {
			t.Fatalf("response %+v, %v", resp, err)
		}
	})
}

// TestLocalIsLeftToTheClient: a command the wrapper runs locally (a link)
// is counted by the daemon, which does not run it.
func TestLocalIsLeftToTheClient(t *testing.T) {
	if _, err := os.Stat("/usr/bin/gcc"); err != nil {
		t.Skip("no gcc")
	}
	dir := t.TempDir()
	d, _ := start(t, dir, time.Minute)
	resp := call(t, d.Socket, &ccd.Request{Dir: dir, Compiler: "/usr/bin/gcc", Args: []string{"a.o", "-o", "a"},
		Env: []string{"XDG_CONFIG_HOME=" + dir, "PATH=/usr/bin:/bin"}})
	if resp.Error != "" || !resp.Local {
		t.Fatalf("response %+v, want Local", resp)
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); !os.IsNotExist(err) {
		t.Fatal("the daemon ran the link itself")
	}
	s, err := stats.Open(dir).Read()
	if err != nil || s.Requests != 1 || s.LocalCompiles["link"] != 1 {
		t.Fatalf("stats %+v, %v", s, err)
	}
}
