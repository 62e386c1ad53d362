package disk

import (
	"os"
	"syscall"
)

// The hot paths use raw system calls on file descriptors rather than
// *os.File: for regular files os.File adds a poller registration attempt and
// a finalizer per open, measurable at tens of thousands of small blobs per
// second. Errors are *os.PathError so that messages name the file.

func ignoringEINTR[T any](f func() (T, error)) (T, error) {
	for {
		v, err := f()
		if err != syscall.EINTR {
			return v, err
		}
	}
}

// createExcl creates path for writing; it must not exist.
func createExcl(path string) (int, error) {
	fd, err := ignoringEINTR(func() (int, error) {
		return syscall.Open(path, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC, 0o644)
	})
	if err != nil {
		return -1, &os.PathError{Op: "create", Path: path, Err: err}
	}
	return fd, nil
}

// openRead opens path for reading.
func openRead(path string) (int, error) {
	fd, err := ignoringEINTR(func() (int, error) {
		return syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	})
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, nil
}

// writeAll writes all of b to fd at its current offset.
func writeAll(fd int, path string, b []byte) error {
	for len(b) > 0 {
		n, err := ignoringEINTR(func() (int, error) { return syscall.Write(fd, b) })
		if err != nil {
			return &os.PathError{Op: "write", Path: path, Err: err}
		}
		b = b[n:]
	}
	return nil
}

// pread is one pread(2) call.
func pread(fd int, path string, b []byte, off int64) (int, error) {
	n, err := ignoringEINTR(func() (int, error) { return syscall.Pread(fd, b, off) })
	if err != nil {
		return 0, &os.PathError{Op: "read", Path: path, Err: err}
	}
	return n, nil
}

// preadFull reads from fd at off until b is full or the file ends, and
// returns how many bytes it read.
func preadFull(fd int, path string, b []byte, off int64) (int, error) {
	total := 0
	for total < len(b) {
		n, err := pread(fd, path, b[total:], off+int64(total))
		if err != nil {
			return total, err
		}
		if n == 0 {
			break
		}
		total += n
	}
	return total, nil
}

func closeFD(fd int, path string) error {
	if err := syscall.Close(fd); err != nil {
		return &os.PathError{Op: "close", Path: path, Err: err}
	}
	return nil
}

func rename(from, to string) error {
	if err := syscall.Rename(from, to); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

func unlink(path string) error {
	if _, err := ignoringEINTR(func() (struct{}, error) { return struct{}{}, syscall.Unlink(path) }); err != nil {
		return &os.PathError{Op: "unlink", Path: path, Err: err}
	}
	return nil
}

// fileID identifies an inode, to tell whether a path still names the file
// that a reader has open.
type fileID struct{ dev, ino uint64 }

func fstatID(fd int) (fileID, bool) {
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) != nil {
		return fileID{}, false
	}
	return fileID{uint64(st.Dev), st.Ino}, true
}

func statID(path string) (fileID, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fileID{}, err
	}
	return fileID{uint64(st.Dev), st.Ino}, nil
}
