package main

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-build/kiln/scheduler"
)

func TestStatusPage(t *testing.T) {
	n := 0
	sched := scheduler.New(scheduler.Config{Clock: systemClock{}, NewID: func() string { n++; return "id" + string(rune('0'+n)) }})
	if _, _, err := sched.AddWorker(scheduler.WorkerInfo{Name: "build-<7>", Slots: 3, Properties: []scheduler.Property{{Name: "pool", Value: "fast"}}}); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	statusHandler(sched, time.Now())(rec, httptest.NewRequest("GET", "/", nil))
	body := rec.Body.String()
	for _, want := range []string{"build-&lt;7&gt;", "0 / 3", "pool=fast"} {
		if !strings.Contains(body, want) {
			t.Errorf("status page lacks %q:\n%s", want, body)
		}
	}
	rec = httptest.NewRecorder()
	statusHandler(sched, time.Now())(rec, httptest.NewRequest("GET", "/nope", nil))
	if rec.Code != 404 {
		t.Errorf("unknown path answered %d", rec.Code)
	}
	reg := prometheus.NewRegistry()
	registerSchedulerMetrics(reg, sched)
	if got := gaugeValue(t, reg, "kiln_scheduler_worker_slots"); got != 3 {
		t.Errorf("worker slots gauge = %v, want 3", got)
	}
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
