package main

import (
	"html/template"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-build/kiln/scheduler"
)

// statusPage renders the operator's view at "/": workers, their slots and
// properties, and the queues. It reads one Stats snapshot per request.
var statusPage = template.Must(template.New("status").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>kiln status</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}</style>
</head><body>
<h1>kiln server</h1>
<p>up {{.Uptime}} &middot; {{.Stats.Queued}} queued &middot; {{.Stats.Executing}} executing &middot;
{{.Stats.Operations}} operations in flight &middot; {{.Stats.Completed}} completed operations kept</p>
<h2>Workers ({{len .Stats.Workers}})</h2>
<table><tr><th>name</th><th>busy / slots</th><th>properties</th></tr>
{{range .Stats.Workers}}<tr><td>{{.Name}}</td><td>{{.Busy}} / {{.Slots}}</td><td>{{range .Properties}}{{.Name}}={{.Value}} {{end}}</td></tr>
{{else}}<tr><td colspan="3">no worker is connected</td></tr>{{end}}
</table>
<h2>Queues</h2>
<table><tr><th>instance</th><th>platform</th><th>queued</th><th>workers that match</th></tr>
{{range .Stats.Queues}}<tr><td>{{.Instance}}</td><td>{{.Platform}}</td><td>{{.Queued}}</td><td>{{.Workers}}</td></tr>
{{else}}<tr><td colspan="4">no queue</td></tr>{{end}}
</table>
<p><a href="/metrics">metrics</a> &middot; <a href="/healthz">health</a></p>
</body></html>
`))

// statusHandler serves the status page.
func statusHandler(sched *scheduler.Scheduler, started time.Time) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		statusPage.Execute(w, struct {
			Stats  scheduler.Stats
			Uptime time.Duration
		}{sched.Stats(), time.Since(started).Round(time.Second)})
	}
}

// registerSchedulerMetrics exports the scheduler's counts as gauges, read
// at scrape time.
func registerSchedulerMetrics(reg prometheus.Registerer, sched *scheduler.Scheduler) {
	gauge := func(name, help string, f func(scheduler.Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(sched.Stats()) })
	}
	reg.MustRegister(
		gauge("kiln_scheduler_queued_actions", "Actions waiting for a worker.", func(s scheduler.Stats) float64 { return float64(s.Queued) }),
		gauge("kiln_scheduler_executing_actions", "Actions assigned to a worker.", func(s scheduler.Stats) float64 { return float64(s.Executing) }),
		gauge("kiln_scheduler_workers", "Connected workers.", func(s scheduler.Stats) float64 { return float64(len(s.Workers)) }),
		gauge("kiln_scheduler_worker_slots", "Action slots of all connected workers.", func(s scheduler.Stats) float64 {
			n := 0
			for _, w := range s.Workers {
				n += w.Slots
			}
			return float64(n)
		}),
	)
}
