package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExampleConfigsParse loads every file in configs/ strictly.
func TestExampleConfigsParse(t *testing.T) {
	files, _ := filepath.Glob("../../configs/*.yaml")
	if len(files) == 0 {
		t.Fatal("no example configs found")
	}
	for _, f := range files {
		cfg, err := loadConfig(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if _, err := cfg.Server.parse(); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"UnknownKey", "server:\n  grpc_listn: x\n", "field grpc_listn not found"},
		{"UnknownSection", "servr: {}\n", "field servr not found"},
		{"WrongType", "server:\n  store: [disk]\n", "cannot unmarshal"},
		{"TwoDocuments", "server: {}\n---\nserver: {}\n", "more than one YAML document"},
		{"BadSize", "server:\n  max_size: lots\n", "max_size"},
		{"ZeroSize", "server:\n  max_size: 0\n", "max_size"},
		{"BadStore", "server:\n  store: tape\n", "store \"tape\""},
		{"BadDuration", "server:\n  resume_window: soon\n", "resume_window"},
		{"BadLevel", "server:\n  log_level: loud\n", "log_level"},
		{"BadSandbox", "server:\n  sandbox: maybe\n", "sandbox \"maybe\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(p, []byte(tc.yaml), 0o644)
			cfg, err := loadConfig(p)
			if err == nil {
				_, err = cfg.Server.parse()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
	t.Run("EmptyFileKeepsDefaults", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "c.yaml")
		os.WriteFile(p, nil, 0o644)
		cfg, err := loadConfig(p)
		if err != nil || cfg.Server.GRPCListen != "127.0.0.1:8980" {
			t.Fatalf("%+v %v", cfg, err)
		}
	})
}
