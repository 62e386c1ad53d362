// Package ccd is the protocol between the kiln command and the kiln cc
// daemon: a per-user kiln-core process, started on first use, that runs
// remote compiles for every wrapper call of a build. It keeps the server
// connection open and spares each remote compile the start of kiln-core
// (tens of milliseconds of Go initialisation for gRPC and protobuf), as
// sccache's local server does for sccache.
//
// One request and one response per connection on a Unix socket, each a
// 4-byte big-endian length and a JSON document. This package is the
// client side and the framing; it must stay free of gRPC and of the net
// package, since cmd/kiln links it (see cmd/kiln's TestStaysSmall). The
// daemon is wrapper/ccd/daemon.
package ccd

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Version is the protocol version; a daemon refuses other versions.
const Version = 1

// MaxMessage bounds a message (stdout and stderr of a compile included).
const MaxMessage = 64 << 20

// Request is one compile for the daemon.
type Request struct {
	Version int `json:"version"`
	// Dir is the compile's working directory.
	Dir string `json:"dir"`
	// Env is the compile's environment, as os.Environ.
	Env []string `json:"env"`
	// Compiler is the compiler's absolute path (resolved by the client).
	Compiler string `json:"compiler"`
	// Args are the compiler's arguments.
	Args []string `json:"args"`
	// Umask is the client's umask; outputs are created with it.
	Umask uint32 `json:"umask"`
}

// Response is the daemon's answer.
type Response struct {
	// Exit is the compile's exit code.
	Exit int `json:"exit"`
	// Stdout and Stderr are the compiler's output (and kiln's warnings),
	// for the client to write.
	Stdout []byte `json:"stdout,omitempty"`
	Stderr []byte `json:"stderr,omitempty"`
	// Local asks the client to run the compiler itself, with the original
	// arguments: a fallback, a compile error to report, a local decision.
	// The daemon has counted it.
	Local bool `json:"local,omitempty"`
	// Error says the daemon could not handle the request at all (a bad
	// configuration, another version); the client then does the compile
	// without the daemon, which reports the problem.
	Error string `json:"error,omitempty"`
}

// Write sends v as one message.
func Write(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(data) > MaxMessage {
		return fmt.Errorf("ccd: message of %d bytes is over the %d-byte limit", len(data), MaxMessage)
	}
	msg := make([]byte, 4+len(data))
	binary.BigEndian.PutUint32(msg, uint32(len(data)))
	copy(msg[4:], data)
	_, err = w.Write(msg)
	return err
}

// Read receives one message into v.
func Read(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return fmt.Errorf("ccd: read message length: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxMessage {
		return fmt.Errorf("ccd: message of %d bytes is over the %d-byte limit", n, MaxMessage)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return fmt.Errorf("ccd: read message: %w", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("ccd: decode message: %w", err)
	}
	return nil
}

// SocketPath is the daemon's socket in cacheDir for the kiln-core binary
// at core: named after the binary's path, size and modification time, so
// that an upgraded kiln-core gets a daemon of its own and the old one
// idles out.
func SocketPath(cacheDir, core string) (string, error) {
	fi, err := os.Stat(core)
	if err != nil {
		return "", err
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%d\x00%d", core, fi.Size(), fi.ModTime().UnixNano())
	p := filepath.Join(cacheDir, "daemon-"+strconv.FormatUint(h.Sum64(), 16)+".sock")
	if len(p) >= len(syscall.RawSockaddrUnix{}.Path) {
		return "", fmt.Errorf("ccd: socket path %s is too long for a Unix socket", p)
	}
	return p, nil
}

// ErrNoDaemon is Dial's error when no daemon listens on the socket.
var ErrNoDaemon = errors.New("ccd: no daemon")

// Dial connects to the daemon's socket (with raw system calls: the net
// package would make the kiln command dynamically linked and slower to
// start).
func Dial(sock string) (*os.File, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Connect(fd, &syscall.SockaddrUnix{Name: sock})
		if err != syscall.EINTR {
			break
		}
	}
	if err == nil {
		// Non-blocking, so that the runtime poller serves it and
		// deadlines work.
		err = syscall.SetNonblock(fd, true)
	}
	if err != nil {
		syscall.Close(fd)
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, ErrNoDaemon
		}
		return nil, fmt.Errorf("ccd: connect %s: %w", sock, err)
	}
	return os.NewFile(uintptr(fd), sock), nil
}

// Call sends req on conn and waits for the response until deadline (zero:
// no limit): a daemon that stops answering must not hang the build. It
// closes conn.
func Call(conn *os.File, req *Request, deadline time.Time) (*Response, error) {
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("ccd: %w", err)
	}
	req.Version = Version
	if err := Write(conn, req); err != nil {
		return nil, err
	}
	var resp Response
	if err := Read(conn, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}
