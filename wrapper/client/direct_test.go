package client

import (
	"strings"
	"testing"
)

func TestIncludedFiles(t *testing.T) {
	pre := strings.Join([]string{
		`# 0 "src/a.c"`,
		`# 1 "/home/me/proj//"`,
		`# 0 "<built-in>"`,
		`# 0 "<command-line>"`,
		`# 1 "/usr/include/stdc-predef.h" 1 3 4`,
		`# 1 "src/a.c"`,
		`int x;`,
		`# 1 "inc/with \"quote\" and \\ back.h" 1`,
		`#pragma once`,
		`# 12 "src/a.c" 2`,
		`# 1 "inc/\303\251t\303\251.h" 1`,
		`  # 3 "not a marker.h"`,
		`#define X "# 1 \"nor this.h\""`,
	}, "\n")
	got := strings.Join(includedFiles([]byte(pre)), "|")
	want := `src/a.c|/usr/include/stdc-predef.h|inc/with "quote" and \ back.h|inc/été.h`
	if got != want {
		t.Fatalf("included files\n%s\nwant\n%s", got, want)
	}
	if includedFiles([]byte(`# 1 "bad \q escape.h"`)) != nil {
		t.Fatal("an unreadable marker must disable direct mode (nil)")
	}
}

func FuzzIncludedFiles(f *testing.F) {
	f.Add([]byte("# 1 \"a.c\"\n# 2 \"b\\\\c.h\" 1 3\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, p := range includedFiles(data) {
			if p == "" || strings.HasPrefix(p, "<") {
				t.Fatalf("bad path %q", p)
			}
		}
	})
}
