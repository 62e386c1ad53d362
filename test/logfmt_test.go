package test

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// parseLogfmt splits one line written by log/slog's TextHandler into its key=value pairs.
// Values are bare (up to the next space) or Go-quoted strings, which is how slog writes
// values containing spaces, quotes or '='. A later duplicate key overwrites an earlier one.
func parseLogfmt(line string) (map[string]string, error) {
	kv := make(map[string]string)
	rest := strings.TrimSpace(line)
	for rest != "" {
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("no key=value at %q", rest)
		}
		key := rest[:eq]
		if strings.ContainsAny(key, " \t\"") {
			return nil, fmt.Errorf("malformed key %q", key)
		}
		rest = rest[eq+1:]
		var value string
		if strings.HasPrefix(rest, `"`) {
			quoted, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return nil, fmt.Errorf("value of %s: %w", key, err)
			}
			if value, err = strconv.Unquote(quoted); err != nil {
				return nil, fmt.Errorf("value of %s: %w", key, err)
			}
			rest = rest[len(quoted):]
			if rest != "" && rest[0] != ' ' {
				return nil, fmt.Errorf("value of %s: junk after quoted string: %q", key, rest)
			}
		} else {
			end := strings.IndexByte(rest, ' ')
			if end < 0 {
				end = len(rest)
			}
			value, rest = rest[:end], rest[end:]
		}
		kv[key] = value
		rest = strings.TrimLeft(rest, " ")
	}
	return kv, nil
}

func TestParseLogfmt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		line    string
		want    map[string]string
		wantErr bool
	}{
		{
			// The startup line the harness waits for.
			name: "StartupLine",
			line: `time=2026-11-28T14:00:00.000Z level=INFO msg="kiln server started" grpc=127.0.0.1:39113 http=127.0.0.1:41235`,
			want: map[string]string{
				"time": "2026-11-28T14:00:00.000Z", "level": "INFO", "msg": "kiln server started",
				"grpc": "127.0.0.1:39113", "http": "127.0.0.1:41235",
			},
		},
		{
			// slog quotes values with quotes and '=' inside, escaping as Go does.
			name: "EscapedQuotedValue",
			line: `msg="a \"b\" c=d" err="x\ny"`,
			want: map[string]string{"msg": `a "b" c=d`, "err": "x\ny"},
		},
		{
			// An empty value is written as "".
			name: "EmptyValue",
			line: `msg="" k=v`,
			want: map[string]string{"msg": "", "k": "v"},
		},
		{
			// Trailing spaces and doubled separators are tolerated.
			name: "ExtraSpaces",
			line: "  a=1   b=2  ",
			want: map[string]string{"a": "1", "b": "2"},
		},
		{
			// A line that is not logfmt at all (a panic, say) is an error, not an empty map.
			name:    "NotLogfmt",
			line:    "panic: runtime error",
			wantErr: true,
		},
		{
			// An unterminated quoted value.
			name:    "UnterminatedQuote",
			line:    `msg="kiln server`,
			wantErr: true,
		},
		{
			// Something glued to the end of a quoted value.
			name:    "JunkAfterQuote",
			line:    `msg="a"b`,
			wantErr: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseLogfmt(tc.line)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parseLogfmt(%q) = %v, want an error", tc.line, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseLogfmt(%q): %v", tc.line, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseLogfmt(%q) = %v, want %v", tc.line, got, tc.want)
			}
		})
	}
}
