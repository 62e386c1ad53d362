package cmdline

import (
	"path"
	"strings"
)

// conftest reports, with a reason text, whether a compile is a
// configure-time probe. Such compiles are tiny, run one after another, and
// are faster locally than the round trip to the cluster; sccache-dist
// users asked for exactly this. The rules, on the paths as written on the
// command line:
//
//   - autoconf: the source's or the output's base name without extension
//     is "conftest" or "conftest2" (conftest.c, conftest.cpp, conftest.o,
//     the conftest executable, AC_PROG_CC_C_O's conftest2.o);
//   - CMake try_compile (and compiler identification): the output has a
//     directory component "cmTC_*.dir" (CMakeFiles/cmTC_1a2b3.dir/src.c.o),
//     or the source has a component "CMakeFiles" directly followed by
//     "CMakeTmp" (CMake before 3.24) or "CMakeScratch" (3.24 on), or the
//     source's base name is CMake<Lang>CompilerId.<ext> or
//     CMake<Lang>CompilerABI.<ext>;
//   - Meson: the source or output has a component "meson-private" (where
//     Meson runs its sanity and compiler checks);
//   - zlib-style hand-written configure scripts: the source's or output's
//     stem is "ztest" followed by the shell's PID (ztest12345.c).
//
// It returns "" for an ordinary compile.
func conftest(source, output string) string {
	for _, p := range []string{source, output} {
		b := path.Base(p)
		stem := strings.TrimSuffix(b, path.Ext(b))
		if stem == "conftest" || stem == "conftest2" {
			return "autoconf conftest " + p
		}
		if n := strings.TrimPrefix(stem, "ztest"); n != stem && n != "" && strings.Trim(n, "0123456789") == "" {
			return "configure test " + p
		}
	}
	if b := path.Base(source); strings.HasPrefix(b, "CMake") &&
		(strings.Contains(b, "CompilerId.") || strings.Contains(b, "CompilerABI.")) {
		return "CMake compiler check " + source
	}
	for _, c := range strings.Split(path.Dir(output), "/") {
		if strings.HasPrefix(c, "cmTC_") && strings.HasSuffix(c, ".dir") {
			return "CMake try_compile " + output
		}
	}
	comps := strings.Split(source, "/")
	for i, c := range comps {
		if c == "CMakeFiles" && i+1 < len(comps)-1 && (comps[i+1] == "CMakeTmp" || comps[i+1] == "CMakeScratch") {
			return "CMake try_compile " + source
		}
	}
	for _, p := range []string{source, output} {
		for _, c := range strings.Split(p, "/") {
			if c == "meson-private" {
				return "Meson compiler check " + p
			}
		}
	}
	return ""
}
