package runner

// SetExecutable makes s start exe as its init instead of the running
// binary, for benchmarks of another binary's start (kiln's own).
func SetExecutable(s *Sandbox, exe string) { s.exe = exe }
