package disk_test

import "syscall"

func mount(source, target, fstype, data string) error {
	return syscall.Mount(source, target, fstype, 0, data)
}

func unmount(target string) error { return syscall.Unmount(target, 0) }
