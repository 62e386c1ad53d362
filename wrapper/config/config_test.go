package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/wrapper/config"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoad(t *testing.T) {
	t.Run("Defaults", func(t *testing.T) {
		// No file, no variables: the documented defaults.
		c, err := config.Load(env(map[string]string{"XDG_CONFIG_HOME": t.TempDir()}))
		if err != nil {
			t.Fatal(err)
		}
		if c.Server != "grpc://127.0.0.1:8980" || !c.Fallback || c.ForceRemote || c.ConnectTimeout != 2*time.Second || c.ExecuteTimeout != 5*time.Minute {
			t.Fatalf("defaults: %+v", c)
		}
		if c.Sources["server"] != "default" {
			t.Fatalf("source %q", c.Sources["server"])
		}
	})
	t.Run("FileThenEnvironment", func(t *testing.T) {
		// The file overrides defaults, the environment overrides the file.
		dir := t.TempDir()
		path := filepath.Join(dir, "kiln", "client.yaml")
		os.MkdirAll(filepath.Dir(path), 0o755)
		os.WriteFile(path, []byte("server: grpc://10.0.0.1:1\ninstance: a\nconnect_timeout: 500ms\n"), 0o644)
		c, err := config.Load(env(map[string]string{"XDG_CONFIG_HOME": dir, "KILN_INSTANCE": "b", "KILN_FALLBACK": "0"}))
		if err != nil {
			t.Fatal(err)
		}
		if c.Server != "grpc://10.0.0.1:1" || c.Sources["server"] != path {
			t.Fatalf("server %q from %q", c.Server, c.Sources["server"])
		}
		if c.Instance != "b" || c.Sources["instance"] != "KILN_INSTANCE" || c.Fallback || c.ConnectTimeout != 500*time.Millisecond {
			t.Fatalf("config %+v", c)
		}
		// Format is itself a valid configuration file.
		os.WriteFile(path, []byte(strings.SplitN(c.Format(), "\n", 2)[1]), 0o644)
		c2, err := config.Load(env(map[string]string{"XDG_CONFIG_HOME": dir}))
		if err != nil {
			t.Fatalf("reload %v\n%s", err, c.Format())
		}
		if c2.Instance != "b" || c2.Fallback {
			t.Fatalf("reload %+v", c2)
		}
	})
	t.Run("UnknownKey", func(t *testing.T) {
		// Strict parsing: a typo is an error, not silently ignored.
		dir := t.TempDir()
		path := filepath.Join(dir, "kiln", "client.yaml")
		os.MkdirAll(filepath.Dir(path), 0o755)
		os.WriteFile(path, []byte("sever: x\n"), 0o644)
		_, err := config.Load(env(map[string]string{"XDG_CONFIG_HOME": dir}))
		if err == nil || !strings.Contains(err.Error(), "sever") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("BadEnvironment", func(t *testing.T) {
		// A malformed variable names itself.
		_, err := config.Load(env(map[string]string{"XDG_CONFIG_HOME": t.TempDir(), "KILN_FORCE_REMOTE": "maybe"}))
		if err == nil || !strings.Contains(err.Error(), "KILN_FORCE_REMOTE") {
			t.Fatalf("err %v", err)
		}
		_, err = config.Load(env(map[string]string{"XDG_CONFIG_HOME": t.TempDir(), "KILN_SERVER": "http://x:1"}))
		if err == nil || !strings.Contains(err.Error(), "KILN_SERVER") {
			t.Fatalf("err %v", err)
		}
	})
}
