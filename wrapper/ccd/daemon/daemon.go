// Package daemon is the kiln cc daemon (`kiln-core cc-daemon`): it serves
// ccd requests on a Unix socket, running each with wrapper/client in the
// client's working directory, environment and umask, with one gRPC
// connection per server shared by all compiles. Local compiles are left to
// the client. It exits after an idle period, or at once when its socket
// file is removed or replaced.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/kiln-build/kiln/internal/grpcaddr"
	"github.com/kiln-build/kiln/wrapper/ccd"
	"github.com/kiln-build/kiln/wrapper/client"
	"github.com/kiln-build/kiln/wrapper/config"
	"github.com/kiln-build/kiln/wrapper/stats"
)

// requestTimeout bounds the wait for a request once a client connects.
const requestTimeout = 10 * time.Second

// ErrRunning is Serve's error when another daemon holds the socket.
var ErrRunning = errors.New("another kiln cc daemon serves this socket")

// Daemon serves compiles. Fields are set before Serve.
type Daemon struct {
	// Socket is the Unix socket's path (see ccd.SocketPath).
	Socket string
	// CacheDir is the wrapper's cache directory (stats, toolchains).
	CacheDir string
	// Self is the kiln command (links to it are not compilers).
	Self string
	// Idle is how long to wait for a request before exiting.
	Idle time.Duration
	// Log receives one line per problem.
	Log *slog.Logger

	// hashes serves every compile's direct mode.
	hashes client.FileHashes

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
	last  time.Time // the last request's end
	busy  int       // requests in progress
}

// Serve listens on d.Socket and serves until ctx ends, the daemon has been
// idle for d.Idle, or the socket file is removed; then it waits for the
// requests in progress.
func (d *Daemon) Serve(ctx context.Context) error {
	lock, err := os.OpenFile(d.Socket+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return ErrRunning
	}
	os.Remove(d.Socket) // a dead daemon's
	ln, err := net.Listen("unix", d.Socket)
	if err != nil {
		return err
	}
	if err := os.Chmod(d.Socket, 0o600); err != nil {
		ln.Close()
		return err
	}
	fi, err := os.Stat(d.Socket)
	if err != nil {
		ln.Close()
		return err
	}
	d.conns = map[string]*grpc.ClientConn{}
	d.last = time.Now()

	// Requests run under the caller's ctx: stopping for idleness or a
	// removed socket lets the ones in progress finish.
	reqCtx := ctx
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { d.watch(ctx, stop, fi) })
	wg.Go(func() { <-ctx.Done(); ln.Close() }) // ends Accept
	for {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		d.mu.Lock()
		d.busy++
		d.mu.Unlock()
		wg.Go(func() {
			defer c.Close()
			d.handle(reqCtx, c.(*net.UnixConn))
			d.mu.Lock()
			d.busy--
			d.last = time.Now()
			d.mu.Unlock()
		})
	}
	stop()
	wg.Wait()
	for _, c := range d.conns {
		c.Close()
	}
	// Remove the socket only if it is still ours.
	if now, err := os.Stat(d.Socket); err == nil && os.SameFile(now, fi) {
		os.Remove(d.Socket)
	}
	return nil
}

// watch stops the daemon when it has been idle for d.Idle or its socket
// file is gone or replaced (its cache directory removed, say).
func (d *Daemon) watch(ctx context.Context, stop func(), sock os.FileInfo) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if fi, err := os.Stat(d.Socket); err != nil || !os.SameFile(fi, sock) {
			d.Log.Info("socket removed, exiting", "socket", d.Socket)
			stop()
			return
		}
		d.mu.Lock()
		idle := d.busy == 0 && time.Since(d.last) > d.Idle
		d.mu.Unlock()
		if idle {
			stop()
			return
		}
	}
}

// handle serves one request. Any failure before the compile starts is an
// Error response, on which the client compiles without the daemon.
func (d *Daemon) handle(ctx context.Context, c *net.UnixConn) {
	resp := d.serve(ctx, c)
	if err := ccd.WriteResponse(c, resp); err != nil {
		d.Log.Warn("reply", "err", err)
	}
}

func (d *Daemon) serve(ctx context.Context, c *net.UnixConn) *ccd.Response {
	if err := sameUser(c); err != nil {
		return &ccd.Response{Error: err.Error()}
	}
	// A client that connects and sends nothing must not hold the daemon.
	c.SetReadDeadline(time.Now().Add(requestTimeout))
	req, err := ccd.ReadRequest(c)
	if err != nil {
		return &ccd.Response{Error: err.Error()}
	}
	c.SetReadDeadline(time.Time{})
	if !filepath.IsAbs(req.Dir) || !filepath.IsAbs(req.Compiler) {
		return &ccd.Response{Error: "working directory and compiler must be absolute paths"}
	}
	getenv := envLookup(req.Env)
	cfg, err := config.Load(getenv)
	if err != nil {
		return &ccd.Response{Error: err.Error()}
	}
	if !cfg.Daemon {
		return &ccd.Response{Error: "the daemon is turned off (daemon: false)"}
	}
	// The compile ends within execute_timeout (the wrapper bounds it);
	// the client waits that long and a grace period.
	if err := ccd.WriteAccept(c, cfg.ExecuteTimeout+ccd.Grace); err != nil {
		d.Log.Warn("accept", "err", err)
	}
	var stdout, stderr strings.Builder
	umask := os.FileMode(req.Umask & 0o777)
	w := &client.Wrapper{
		Config:     cfg,
		Stats:      stats.Open(d.CacheDir),
		CacheDir:   filepath.Join(d.CacheDir, "toolchains"),
		Self:       d.Self,
		Getenv:     getenv,
		Stdout:     &stdout,
		Stderr:     &stderr,
		Now:        time.Now,
		Dir:        req.Dir,
		Env:        req.Env,
		Umask:      &umask,
		DeferLocal: true,
		Dial:       d.dial,
		Hashes:     &d.hashes,
	}
	exit := w.Run(ctx, req.Compiler, req.Args)
	return &ccd.Response{Exit: exit, Stdout: []byte(stdout.String()), Stderr: []byte(stderr.String()), Local: w.Deferred()}
}

// dial returns the shared connection to addr, made on first use.
func (d *Daemon) dial(addr string) (*grpc.ClientConn, func(), error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.conns[addr]; ok {
		return c, func() {}, nil
	}
	c, err := grpcaddr.Dial(addr)
	if err != nil {
		return nil, nil, err
	}
	d.conns[addr] = c
	return c, func() {}, nil
}

// sameUser refuses peers of another uid (the socket's mode already does;
// this also covers a directory with loose permissions).
func sameUser(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if credErr != nil {
		return credErr
	}
	if int(cred.Uid) != os.Getuid() {
		return fmt.Errorf("peer uid %d is not the daemon's uid %d", cred.Uid, os.Getuid())
	}
	return nil
}

// envLookup returns a getenv over env (later entries win, as in exec).
func envLookup(env []string) func(string) string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return func(k string) string { return m[k] }
}
