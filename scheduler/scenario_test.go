package scheduler_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/scheduler"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata/*.txt")

// TestScenarios replays testdata/*.txt, in the manner of etcd raft's
// interaction tests: each command is followed by "----" and the output it
// must produce, up to a blank line. Comments start with #. Run with
// -rewrite to regenerate the outputs after a deliberate change, then read
// the diff.
//
// Commands (workers, operations and actions go by names the file chooses;
// a lease is named by its worker and action):
//
//	add-worker W slots=N [name=value ...]
//	remove-worker W
//	heartbeat W
//	submit OP ACTION [name=value ...] [--priority=N] [--instance=I] [--nocache]
//	cancel OP
//	poll W                  the leases assigned and cancelled
//	started W ACTION
//	complete W ACTION [exit=N]
//	advance DURATION        move the clock, then Tick
//	wake W                  whether W's wake channel was signalled
//	ops                     every operation's stage and status
//	stats                   queues and workers
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			runScenario(t, file)
		})
	}
}

func runScenario(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	h := &harness{env: newEnv(t), workers: map[string]*scenarioWorker{}, ops: map[string]string{}}
	var out strings.Builder
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			out.WriteString(line + "\n")
			continue
		}
		if i+1 >= len(lines) || lines[i+1] != "----" {
			t.Fatalf("%s:%d: command without ----", file, i+1)
		}
		cmdLine := i + 1
		i += 2
		var want []string
		for ; i < len(lines) && lines[i] != ""; i++ {
			want = append(want, lines[i])
		}
		got := h.run(line)
		if !*rewrite && strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", file, cmdLine, line, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		out.WriteString(line + "\n----\n")
		for _, g := range got {
			out.WriteString(g + "\n")
		}
		if i < len(lines) {
			out.WriteString("\n")
		}
	}
	if *rewrite {
		if err := os.WriteFile(file, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type scenarioWorker struct {
	id     string
	wake   <-chan struct{}
	leases map[string]string // action → lease id, the latest assignment
}

type harness struct {
	*env
	workers map[string]*scenarioWorker
	ops     map[string]string // scenario name → operation name
	order   []string          // scenario names of operations, in submission order
}

// leaseName names a lease id "W/ACTION" for the output.
func (h *harness) leaseName(id string) string {
	for name, w := range h.workers {
		for act, lid := range w.leases {
			if lid == id {
				return name + "/" + act
			}
		}
	}
	return id
}

var idPattern = regexp.MustCompile(`id[0-9]+`)

// run executes one command and returns its output, with the scheduler's
// ids of workers, operations and leases replaced by the scenario's names.
func (h *harness) run(line string) []string {
	out := h.exec(line)
	names := map[string]string{}
	for name, w := range h.workers {
		names[w.id] = name
		for act, lid := range w.leases {
			names[lid] = name + "/" + act
		}
	}
	for name, id := range h.ops {
		names[id] = name
	}
	for i, l := range out {
		out[i] = idPattern.ReplaceAllStringFunc(l, func(id string) string {
			if n, ok := names[id]; ok {
				return n
			}
			return id
		})
	}
	return out
}

func (h *harness) exec(line string) []string {
	fields := strings.Fields(line)
	cmd, args := fields[0], fields[1:]
	var platform []string
	var flags []string
	for _, a := range args {
		switch {
		case strings.HasPrefix(a, "--"):
			flags = append(flags, a[2:])
		case strings.Contains(a, "="):
			platform = append(platform, a)
		}
	}
	option := func(name string) (string, bool) {
		for _, f := range flags {
			if k, v, _ := strings.Cut(f, "="); k == name {
				return v, true
			}
		}
		return "", false
	}
	positional := slices.DeleteFunc(slices.Clone(args), func(a string) bool { return strings.Contains(a, "=") || strings.HasPrefix(a, "--") })
	arg := func(i int) string {
		if i >= len(positional) {
			return ""
		}
		return positional[i]
	}
	w := h.workers[arg(0)]
	switch cmd {
	case "remove-worker", "heartbeat", "poll", "started", "complete", "wake":
		if w == nil {
			return []string{"unknown worker " + arg(0)}
		}
	}
	errOut := func(err error) []string {
		if err == nil {
			return []string{"ok"}
		}
		s, _ := status.FromError(err)
		return []string{fmt.Sprintf("error: %s: %s", s.Code(), s.Message())}
	}
	switch cmd {
	case "add-worker":
		slots := 0
		var props []string
		for _, p := range platform {
			if v, ok := strings.CutPrefix(p, "slots="); ok {
				slots, _ = strconv.Atoi(v)
				continue
			}
			props = append(props, p)
		}
		id, wake, err := h.s.AddWorker(scheduler.WorkerInfo{Name: arg(0), Slots: slots, Properties: propsOf(props)})
		if err == nil {
			h.workers[arg(0)] = &scenarioWorker{id: id, wake: wake, leases: map[string]string{}}
		}
		return errOut(err)
	case "remove-worker":
		h.s.RemoveWorker(w.id)
		return []string{"ok"}
	case "heartbeat":
		return errOut(h.s.Heartbeat(w.id))
	case "submit":
		a := action(arg(1), platform...)
		a.ActionBytes = []byte(arg(1))
		if v, ok := option("priority"); ok {
			p, _ := strconv.Atoi(v)
			a.Priority = int32(p)
		}
		a.Instance, _ = option("instance")
		_, a.DoNotCache = option("nocache")
		st, err := h.s.Submit(a)
		if err != nil {
			return errOut(err)
		}
		h.ops[arg(0)] = st.Name
		h.order = append(h.order, arg(0))
		return []string{arg(0) + ": " + stageName(st)}
	case "cancel":
		return errOut(h.s.Cancel(h.ops[arg(0)]))
	case "poll":
		p, err := h.s.Poll(w.id)
		if err != nil {
			return errOut(err)
		}
		var out []string
		for _, id := range p.Cancel {
			out = append(out, "cancel "+h.leaseName(id))
		}
		for _, l := range p.Assign {
			act := string(l.Action.ActionBytes)
			w.leases[act] = l.ID
			out = append(out, fmt.Sprintf("assign %s priority=%d queued=%s", act, l.Action.Priority, l.Queued.Sub(newFakeClock().Now())))
		}
		if len(out) == 0 {
			out = []string{"nothing"}
		}
		return out
	case "started":
		return errOut(h.s.Started(w.id, w.leases[arg(1)]))
	case "complete":
		exit := 0
		for _, p := range platform {
			if v, ok := strings.CutPrefix(p, "exit="); ok {
				exit, _ = strconv.Atoi(v)
			}
		}
		return errOut(h.s.Complete(w.id, w.leases[arg(1)], okResponse(int32(exit))))
	case "advance":
		d, err := time.ParseDuration(arg(0))
		if err != nil {
			return []string{"bad duration: " + err.Error()}
		}
		var alive []string
		for _, name := range positional[1:] {
			alive = append(alive, h.workers[name].id)
		}
		h.advanceAlive(d, alive...)
		return []string{"ok"}
	case "wake":
		if closed(w.wake) {
			return []string{"woken"}
		}
		return []string{"not woken"}
	case "ops":
		var out []string
		for _, name := range h.order {
			st, err := h.s.Get(h.ops[name])
			if err != nil {
				out = append(out, name+": "+errOut(err)[0])
				continue
			}
			out = append(out, name+": "+stageName(st))
		}
		return out
	case "stats":
		st := h.s.Stats()
		out := []string{fmt.Sprintf("queued=%d executing=%d operations=%d completed=%d", st.Queued, st.Executing, st.Operations, st.Completed)}
		for _, q := range st.Queues {
			out = append(out, fmt.Sprintf("queue %q %s: queued=%d workers=%d", q.Instance, q.Platform, q.Queued, q.Workers))
		}
		for _, w := range st.Workers {
			out = append(out, fmt.Sprintf("worker %s %s: busy=%d/%d", w.Name, scheduler.FormatPlatform(w.Properties), w.Busy, w.Slots))
		}
		return out
	}
	return []string{"unknown command " + cmd}
}

func propsOf(kv []string) []scheduler.Property { return props(kv...) }

func stageName(st scheduler.OperationState) string {
	switch st.Stage {
	case scheduler.StageQueued:
		return "queued"
	case scheduler.StageExecuting:
		return "executing"
	case scheduler.StageCompleted:
		if s := st.Response.GetStatus(); s.GetCode() != 0 {
			return fmt.Sprintf("completed: %s: %s", status.FromProto(s).Code(), s.GetMessage())
		}
		return fmt.Sprintf("completed: exit %d", st.Response.GetResult().GetExitCode())
	}
	return fmt.Sprint("stage ", st.Stage)
}
