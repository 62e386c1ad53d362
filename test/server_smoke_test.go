package test

import (
	"net/http"
	"testing"
)

// TestServerStartsAndStops is the harness's own check: kiln starts with an empty data
// directory, reports both addresses, serves /healthz, and exits 0 on SIGTERM (checked by
// startServer's cleanup).
func TestServerStartsAndStops(t *testing.T) {
	s := startServer(t)
	resp, err := http.Get("http://" + s.HTTPAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz: %s, want 200 OK", resp.Status)
	}
}
