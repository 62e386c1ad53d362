package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// startupTimeout bounds the wait for the startup log line and then for /healthz.
	startupTimeout = 60 * time.Second
	// stopTimeout is how long a server may take to exit after SIGTERM.
	stopTimeout = 10 * time.Second
	// startedMessage is the msg of the log line kiln writes once both listeners are up.
	startedMessage = "kiln server started"
)

// server is a kiln server process started by startServer.
type server struct {
	// GRPCAddr is the host:port of the gRPC listener, for example "127.0.0.1:39113".
	GRPCAddr string
	// HTTPAddr is the host:port of the HTTP listener (/healthz, /metrics, status page).
	HTTPAddr string
	// DataDir is the --data directory, removed when the test ends.
	DataDir string

	cmd    *exec.Cmd
	log    *logCapture
	exited chan struct{} // closed when cmd.Wait has returned; waitErr is then set
	// exitReported is set once the test has been failed for an early exit, so that stop
	// does not report it again.
	exitReported bool
	// waitErr is cmd.Wait's result; read it only after exited is closed.
	waitErr error
}

// GRPCURL returns the address in the form Bazel's --remote_cache and --remote_executor take.
func (s *server) GRPCURL() string { return "grpc://" + s.GRPCAddr }

// startServer runs `kiln server` on loopback ports chosen by the kernel, with a fresh data
// directory, plus args. It returns once the server has logged its startup line and
// /healthz answers 200. When the test ends the server gets SIGTERM, and the test fails
// if it does not exit with status 0 within stopTimeout. The server's output is logged.
func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	bin := kilnBinary(t)
	s := &server{DataDir: t.TempDir(), exited: make(chan struct{})}
	s.log = newLogCapture(startedMessage)

	argv := append([]string{
		"server",
		"--grpc-listen", "127.0.0.1:0",
		"--http-listen", "127.0.0.1:0",
		"--data", s.DataDir,
	}, args...)
	s.cmd = exec.Command(bin, argv...)
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	// Its own process group, so that anything kiln spawns can be killed with it.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A child that keeps the output pipe open must not make Wait hang forever.
	s.cmd.WaitDelay = 5 * time.Second
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	// Registered after t.TempDir, so it runs before the data directory is removed.
	t.Cleanup(func() { s.stop(t) })

	t.Logf("started kiln %s (pid %d)", strings.Join(argv, " "), s.cmd.Process.Pid)
	ctx, cancel := context.WithTimeout(context.Background(), startupTimeout)
	defer cancel()
	var line string
	select {
	case line = <-s.log.matched:
	case <-s.exited:
		s.exitReported = true
		t.Fatalf("kiln server exited before logging %q: %v", startedMessage, s.waitErr)
	case <-ctx.Done():
		t.Fatalf("kiln server did not log %q within %v", startedMessage, startupTimeout)
	}
	kv, err := parseLogfmt(line)
	if err != nil {
		t.Fatalf("parse startup line %q: %v", line, err)
	}
	if s.GRPCAddr, err = loopbackAddr(kv, "grpc"); err != nil {
		t.Fatalf("startup line %q: %v", line, err)
	}
	if s.HTTPAddr, err = loopbackAddr(kv, "http"); err != nil {
		t.Fatalf("startup line %q: %v", line, err)
	}
	if err := s.waitHealthy(ctx); err != nil {
		select {
		case <-s.exited:
			s.exitReported = true
		default:
		}
		t.Fatal(err)
	}
	return s
}

// loopbackAddr returns the address logged under key, which must be 127.0.0.1 with a
// real (non-zero) port since startServer asks for 127.0.0.1:0.
func loopbackAddr(kv map[string]string, key string) (string, error) {
	addr, ok := kv[key]
	if !ok {
		return "", fmt.Errorf("no %s= address", key)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%s=%s: %w", key, addr, err)
	}
	if host != "127.0.0.1" || port == "" || port == "0" {
		return "", fmt.Errorf("%s=%s: want 127.0.0.1 with the port the kernel chose", key, addr)
	}
	return addr, nil
}

// waitHealthy polls /healthz until it returns 200, the server exits, or ctx ends.
func (s *server) waitHealthy(ctx context.Context) error {
	url := "http://" + s.HTTPAddr + "/healthz"
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-s.exited:
			return fmt.Errorf("kiln server exited while waiting for %s: %v", url, s.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("GET %s did not return 200 within %v: last: %s", url, startupTimeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM and waits up to stopTimeout for a clean exit, then kills the process
// group. It fails t on a timeout or a non-zero exit, and logs the server's output.
func (s *server) stop(t *testing.T) {
	t.Helper()
	defer func() { t.Logf("kiln server output:\n%s", s.log.String()) }()
	select {
	case <-s.exited:
		if !s.exitReported {
			t.Errorf("kiln server exited before the test ended: %v", s.waitErr)
		}
		return
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("send SIGTERM to kiln server: %v", err)
	}
	select {
	case <-s.exited:
		if s.waitErr != nil {
			var exitErr *exec.ExitError
			if errors.As(s.waitErr, &exitErr) {
				t.Errorf("kiln server exited with %v after SIGTERM, want status 0", exitErr.ProcessState)
			} else {
				t.Errorf("wait for kiln server: %v", s.waitErr)
			}
		}
	case <-time.After(stopTimeout):
		t.Errorf("kiln server did not exit within %v of SIGTERM; killing it", stopTimeout)
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
}

// logCapture collects a process's output and reports the first complete line that
// contains msg="<message>" on matched. It is safe for concurrent writes.
type logCapture struct {
	want    string
	matched chan string // buffered; receives at most one line

	mu      sync.Mutex // guards the fields below
	buf     bytes.Buffer
	scanned int  // bytes of buf already searched for complete lines
	found   bool // a line has been sent on matched
}

func newLogCapture(message string) *logCapture {
	return &logCapture{want: fmt.Sprintf("msg=%q", message), matched: make(chan string, 1)}
}

func (c *logCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	for !c.found {
		rest := c.buf.Bytes()[c.scanned:]
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			break
		}
		line := string(rest[:nl])
		c.scanned += nl + 1
		if strings.Contains(line, c.want) {
			c.found = true
			c.matched <- line
		}
	}
	return len(p), nil
}

// String returns everything written so far.
func (c *logCapture) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}
