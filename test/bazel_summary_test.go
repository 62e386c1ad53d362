package test

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// processSummary is Bazel's line at the end of a build that says where its actions
// ran, for example "INFO: 9 processes: 2 internal, 7 remote cache hit.".
type processSummary struct {
	// Line is the summary line as Bazel printed it.
	Line string
	// Total is the number of processes the line starts with.
	Total int
	// ByKind counts processes by where they ran: "internal", "remote cache hit",
	// "linux-sandbox", "remote", "local", "disk cache hit", ...
	ByKind map[string]int
}

// summaryLine matches the line; Bazel says "1 process" and "0 processes" too, and a
// build with no processes has no list after the count.
var summaryLine = regexp.MustCompile(`(?m)^INFO: (\d+) process(?:es)?(?:: ([^\n]*?))?\.?[ \t\r]*$`)

// summaryPart is one "COUNT KIND" entry of the list.
var summaryPart = regexp.MustCompile(`^(\d+) ([a-z][a-z0-9 _-]*)$`)

// parseProcessSummary finds the last process summary in Bazel's output. It checks that
// the counts per kind add up to the total, so a format it misreads is an error rather
// than a wrong count.
func parseProcessSummary(output string) (processSummary, error) {
	matches := summaryLine.FindAllStringSubmatch(output, -1)
	if len(matches) == 0 {
		return processSummary{}, fmt.Errorf(`no "INFO: N processes: ..." line in Bazel's output`)
	}
	m := matches[len(matches)-1]
	s := processSummary{Line: strings.TrimSpace(m[0]), ByKind: map[string]int{}}
	var err error
	if s.Total, err = strconv.Atoi(m[1]); err != nil {
		return processSummary{}, fmt.Errorf("%q: %w", s.Line, err)
	}
	sum := 0
	if m[2] != "" {
		for _, part := range strings.Split(m[2], ",") {
			pm := summaryPart.FindStringSubmatch(strings.TrimSpace(part))
			if pm == nil {
				return processSummary{}, fmt.Errorf("%q: cannot read %q as COUNT KIND", s.Line, part)
			}
			n, err := strconv.Atoi(pm[1])
			if err != nil {
				return processSummary{}, fmt.Errorf("%q: %w", s.Line, err)
			}
			s.ByKind[pm[2]] += n
			sum += n
		}
	}
	if sum != s.Total {
		return processSummary{}, fmt.Errorf("%q: kinds add up to %d, want %d", s.Line, sum, s.Total)
	}
	return s, nil
}

func TestParseProcessSummary(t *testing.T) {
	for _, tc := range []struct {
		name    string
		output  string
		want    processSummary
		wantErr bool
	}{
		{
			// A build that ran locally.
			name:   "Local",
			output: "INFO: Elapsed time: 5.114s, Critical Path: 0.69s\nINFO: 17 processes: 10 internal, 7 linux-sandbox.\nINFO: Build completed successfully, 17 total actions\n",
			want: processSummary{
				Line: "INFO: 17 processes: 10 internal, 7 linux-sandbox.", Total: 17,
				ByKind: map[string]int{"internal": 10, "linux-sandbox": 7},
			},
		},
		{
			// A rebuild served from the remote cache.
			name:   "RemoteCacheHits",
			output: "INFO: 9 processes: 2 internal, 7 remote cache hit.\n",
			want: processSummary{
				Line: "INFO: 9 processes: 2 internal, 7 remote cache hit.", Total: 9,
				ByKind: map[string]int{"internal": 2, "remote cache hit": 7},
			},
		},
		{
			// Singular, with Windows line endings.
			name:   "OneProcess",
			output: "INFO: 1 process: 1 internal.\r\n",
			want: processSummary{
				Line: "INFO: 1 process: 1 internal.", Total: 1,
				ByKind: map[string]int{"internal": 1},
			},
		},
		{
			// Nothing to do at all.
			name:   "NoProcesses",
			output: "INFO: 0 processes.\n",
			want:   processSummary{Line: "INFO: 0 processes.", Total: 0, ByKind: map[string]int{}},
		},
		{
			// The last summary wins (bazel test prints one per command).
			name:   "LastWins",
			output: "INFO: 2 processes: 2 internal.\nINFO: 3 processes: 1 internal, 2 remote.\n",
			want: processSummary{
				Line: "INFO: 3 processes: 1 internal, 2 remote.", Total: 3,
				ByKind: map[string]int{"internal": 1, "remote": 2},
			},
		},
		{
			// Counts that do not add up mean the line was misread.
			name:    "BadSum",
			output:  "INFO: 9 processes: 2 internal, 6 remote cache hit.\n",
			wantErr: true,
		},
		{
			// A part that is not COUNT KIND.
			name:    "BadPart",
			output:  "INFO: 9 processes: 2 internal, many remote.\n",
			wantErr: true,
		},
		{
			// No summary at all, e.g. Bazel failed during analysis.
			name:    "Missing",
			output:  "ERROR: no such package 'x'\n",
			wantErr: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcessSummary(tc.output)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parseProcessSummary(%q) = %+v, want an error", tc.output, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseProcessSummary(%q): %v", tc.output, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseProcessSummary(%q) = %+v, want %+v", tc.output, got, tc.want)
			}
		})
	}
}
