// Package ccd is the protocol between the kiln command and the kiln cc
// daemon: a per-user kiln-core process, started on first use, that runs
// remote compiles for every wrapper call of a build. It keeps the server
// connection open and spares each remote compile the start of kiln-core
// (tens of milliseconds of Go initialisation for gRPC and protobuf), as
// sccache's local server does for sccache.
//
// One request and one response per connection on a Unix socket, in a
// small binary format (below). This package is the
// client side and the framing; it must stay free of gRPC and of the net
// package, since cmd/kiln links it (see cmd/kiln's TestStaysSmall). The
// daemon is wrapper/ccd/daemon.
package ccd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Version is the protocol version; a daemon refuses other versions.
// Version 2 is binary (version 1 was JSON, which cannot carry arguments
// that are not UTF-8, and which the C fast path would have to parse).
const Version = 2

// MaxMessage bounds a message (stdout and stderr of a compile included).
const MaxMessage = 64 << 20

// AcceptTimeout bounds the wait for the daemon's first answer: a healthy
// daemon accepts or refuses a request at once.
const AcceptTimeout = 10 * time.Second

// Grace is how long past execute_timeout a client waits for a daemon that
// accepted a compile before doing it without the daemon.
const Grace = 5 * time.Second

// The wire format: every message is a 4-byte big-endian length and a
// payload. Integers are 4-byte big-endian; a string is its length and its
// bytes; a list is its count and its strings.
//
//	request:  version, dir, compiler, umask, args (list), env (list)
//	accept:   'A' (one byte), wait in milliseconds
//	response: 'R' (one byte), exit, local (one byte: 0 or 1), stdout,
//	          stderr, error
//
// The client sends a request; the daemon answers with a response (a
// refusal: Error set), or with accept and, within the wait it announced,
// the response. wrapper/fastpath's C client speaks the same.

// Request is one compile for the daemon.
type Request struct {
	Version uint32
	// Dir is the compile's working directory.
	Dir string
	// Env is the compile's environment, as os.Environ.
	Env []string
	// Compiler is the compiler's absolute path (resolved by the client).
	Compiler string
	// Args are the compiler's arguments.
	Args []string
	// Umask is the client's umask; outputs are created with it.
	Umask uint32
}

// Response is the daemon's answer.
type Response struct {
	// Exit is the compile's exit code.
	Exit int
	// Stdout and Stderr are the compiler's output (and kiln's warnings),
	// for the client to write.
	Stdout []byte
	Stderr []byte
	// Local asks the client to run the compiler itself, with the original
	// arguments: a fallback, a compile error to report, a local decision.
	// The daemon has counted it.
	Local bool
	// Error says the daemon could not handle the request at all (a bad
	// configuration, another version); the client then does the compile
	// without the daemon, which reports the problem.
	Error string
}

const (
	kindAccept   = 'A'
	kindResponse = 'R'
)

// encoder appends the wire format's values.
type encoder struct{ b []byte }

func (e *encoder) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *encoder) str(s string) { e.u32(uint32(len(s))); e.b = append(e.b, s...) }
func (e *encoder) strs(l []string) {
	e.u32(uint32(len(l)))
	for _, s := range l {
		e.str(s)
	}
}

// decoder reads them; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

var errShort = errors.New("ccd: message too short")

func (d *decoder) u32() uint32 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 4 {
		d.err = errShort
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.err = errShort
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) str() string {
	n := d.u32()
	if d.err != nil {
		return ""
	}
	if uint64(n) > uint64(len(d.b)) {
		d.err = errShort
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) strs() []string {
	n := d.u32()
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(d.b))/4 { // each takes 4 bytes at least
		d.err = errShort
		return nil
	}
	l := make([]string, n)
	for i := range l {
		l[i] = d.str()
	}
	return l
}

// end fails unless the whole payload was read.
func (d *decoder) end() error {
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("ccd: %d bytes after the message", len(d.b))
	}
	return d.err
}

// writeFrame sends payload as one message.
func writeFrame(w io.Writer, payload []byte) error {
	if len(payload) > MaxMessage {
		return fmt.Errorf("ccd: message of %d bytes is over the %d-byte limit", len(payload), MaxMessage)
	}
	msg := make([]byte, 4, 4+len(payload))
	binary.BigEndian.PutUint32(msg, uint32(len(payload)))
	_, err := w.Write(append(msg, payload...))
	return err
}

// readFrame receives one message's payload.
func readFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("ccd: read message length: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxMessage {
		return nil, fmt.Errorf("ccd: message of %d bytes is over the %d-byte limit", n, MaxMessage)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, fmt.Errorf("ccd: read message: %w", err)
	}
	return data, nil
}

// WriteRequest sends req (its Version as set).
func WriteRequest(w io.Writer, req *Request) error {
	var e encoder
	e.u32(req.Version)
	e.str(req.Dir)
	e.str(req.Compiler)
	e.u32(req.Umask)
	e.strs(req.Args)
	e.strs(req.Env)
	return writeFrame(w, e.b)
}

// VersionError is ReadRequest's error for a request of another protocol
// version.
type VersionError struct{ Got uint32 }

func (e *VersionError) Error() string {
	return fmt.Sprintf("protocol version %d, the daemon speaks %d", e.Got, Version)
}

// ReadRequest receives a request of this protocol version.
func ReadRequest(r io.Reader) (*Request, error) {
	data, err := readFrame(r)
	if err != nil {
		return nil, err
	}
	d := decoder{b: data}
	req := &Request{Version: d.u32()}
	if d.err == nil && req.Version != Version {
		return nil, &VersionError{req.Version}
	}
	req.Dir = d.str()
	req.Compiler = d.str()
	req.Umask = d.u32()
	req.Args = d.strs()
	req.Env = d.strs()
	if err := d.end(); err != nil {
		return nil, fmt.Errorf("ccd: decode request: %w", err)
	}
	return req, nil
}

// WriteAccept tells the client the compile is under way and its response
// comes within wait.
func WriteAccept(w io.Writer, wait time.Duration) error {
	e := encoder{b: []byte{kindAccept}}
	e.u32(uint32(min(wait.Milliseconds(), math.MaxUint32)))
	return writeFrame(w, e.b)
}

// WriteResponse sends resp.
func WriteResponse(w io.Writer, resp *Response) error {
	e := encoder{b: []byte{kindResponse}}
	e.u32(uint32(int32(resp.Exit)))
	local := byte(0)
	if resp.Local {
		local = 1
	}
	e.b = append(e.b, local)
	e.str(string(resp.Stdout))
	e.str(string(resp.Stderr))
	e.str(resp.Error)
	return writeFrame(w, e.b)
}

// readAnswer receives an accept (wait > 0, or 0 with accepted true) or a
// response.
func readAnswer(r io.Reader) (resp *Response, wait time.Duration, accepted bool, err error) {
	data, err := readFrame(r)
	if err != nil {
		return nil, 0, false, err
	}
	d := decoder{b: data}
	switch d.byte() {
	case kindAccept:
		wait = time.Duration(d.u32()) * time.Millisecond
		if err := d.end(); err != nil {
			return nil, 0, false, fmt.Errorf("ccd: decode accept: %w", err)
		}
		return nil, wait, true, nil
	case kindResponse:
		resp = &Response{Exit: int(int32(d.u32()))}
		switch d.byte() {
		case 0:
		case 1:
			resp.Local = true
		default:
			if d.err == nil {
				d.err = errors.New("ccd: local is neither 0 nor 1")
			}
		}
		resp.Stdout = []byte(d.str())
		resp.Stderr = []byte(d.str())
		resp.Error = d.str()
		if err := d.end(); err != nil {
			return nil, 0, false, fmt.Errorf("ccd: decode response: %w", err)
		}
		return resp, 0, false, nil
	}
	if d.err != nil {
		return nil, 0, false, fmt.Errorf("ccd: decode answer: %w", d.err)
	}
	return nil, 0, false, errors.New("ccd: decode answer: unknown kind")
}

// ReadResponse receives the daemon's answer: a response at once, or an
// accept followed by the response within the wait it announced (clock
// gives the time). The reader's deadline is set through setDeadline
// before each read.
func ReadResponse(r io.Reader, setDeadline func(time.Time) error, clock func() time.Time) (*Response, error) {
	if err := setDeadline(clock().Add(AcceptTimeout)); err != nil {
		return nil, fmt.Errorf("ccd: %w", err)
	}
	resp, wait, accepted, err := readAnswer(r)
	if err != nil || !accepted {
		return resp, err
	}
	if err := setDeadline(clock().Add(wait)); err != nil {
		return nil, fmt.Errorf("ccd: %w", err)
	}
	resp, _, accepted, err = readAnswer(r)
	if err == nil && accepted {
		err = errors.New("ccd: accepted twice")
	}
	return resp, err
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

// Call sends req on conn and waits for the response: AcceptTimeout for
// the daemon to take it, then as long as the daemon said; a daemon that
// stops answering must not hang the build. It closes conn.
func Call(conn *os.File, req *Request) (*Response, error) {
	defer conn.Close()
	req.Version = Version
	if err := conn.SetDeadline(time.Now().Add(AcceptTimeout)); err != nil {
		return nil, fmt.Errorf("ccd: %w", err)
	}
	if err := WriteRequest(conn, req); err != nil {
		return nil, err
	}
	return ReadResponse(conn, conn.SetReadDeadline, time.Now)
}
