package config

import (
	"strings"
	"testing"
)

func TestParseFlat(t *testing.T) {
	good := strings.Join([]string{
		"---",
		"# a comment",
		"server: grpc://10.0.0.1:8980   # the cluster",
		`instance: "team \"a\"\t1"`,
		"base_dir: '/home/o''brien/src' # quoted",
		"log:",
		"force_remote: true",
		"fallback: FALSE",
		"",
	}, "\n")
	vals, err := parseFlat([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"server": "grpc://10.0.0.1:8980", "instance": "team \"a\"\t1", "base_dir": "/home/o'brien/src", "log": "", "force_remote": "true", "fallback": "FALSE"} {
		if vals[k].text != want {
			t.Errorf("%s = %q, want %q", k, vals[k].text, want)
		}
	}
	for _, tc := range []struct{ name, in, want string }{
		{"Indented", "server:\n  host: x\n", "line 2: indented"},
		{"Tab", "server:\tx\n", "tab"},
		{"NoColon", "server grpc://x:1\n", "want key: value"},
		{"NoSpaceAfterColon", "server:x\n", "want key: value"},
		{"UpperKey", "Server: x\n", "lower-case"},
		{"Duplicate", "log: a\nlog: b\n", "given twice"},
		{"FlowList", "server: [a, b]\n", "only plain or quoted"},
		{"BlockList", "server: - a\n", "only plain or quoted"},
		{"Anchor", "server: &a x\n", "only plain or quoted"},
		{"Nested", "server: a: b\n", "nested mapping"},
		{"Unterminated", "server: \"abc\n", "unterminated"},
		{"UnterminatedSingle", "server: 'abc\n", "unterminated"},
		{"AfterQuote", "server: \"a\" b\n", "after the quoted value"},
		{"BadEscape", `server: "\q"` + "\n", "double-quoted"},
		{"SecondDocument", "log: a\n---\nlog: b\n", "want key: value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseFlat([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestApplyFileTypes(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"sever: x\n", `unknown key "sever"`},
		{"force_remote: \"true\"\n", "not a boolean"},
		{"force_remote: yes\n", "not a boolean"},
		{"connect_timeout: soon\n", "connect_timeout"},
		{"daemon: maybe\n", "not a boolean"},
		{"daemon_idle: -1s\n", "must be positive"},
		{"daemon_idle: forever\n", "daemon_idle"},
	} {
		vals, err := parseFlat([]byte(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		c := Default()
		if err := c.applyFile(vals); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.in, err, tc.want)
		}
	}
}

// FuzzParseFlat: no input panics, and a configuration that loads prints
// (Format) as a file that loads to the same values.
func FuzzParseFlat(f *testing.F) {
	f.Add([]byte("server: grpc://x:1\ninstance: 'a''b'\nlog: \"/tmp/k\\u00e9.log\" # c\n"))
	f.Add([]byte("---\nforce_remote: true\nexecute_timeout: 1m\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		vals, err := parseFlat(data)
		if err != nil {
			return
		}
		c := Default()
		if c.applyFile(vals) != nil {
			return
		}
		formatted := c.Format()
		again, err := parseFlat([]byte(formatted))
		if err != nil {
			t.Fatalf("Format's output does not parse: %v\n%s", err, formatted)
		}
		c2 := Default()
		if err := c2.applyFile(again); err != nil {
			t.Fatalf("Format's output does not load: %v\n%s", err, formatted)
		}
		for _, k := range Keys {
			if c.Value(k) != c2.Value(k) {
				t.Fatalf("%s: %q, after Format %q", k, c.Value(k), c2.Value(k))
			}
		}
	})
}
