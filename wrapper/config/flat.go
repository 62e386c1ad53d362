package config

import (
	"fmt"
	"strconv"
	"strings"
)

// scalar is one value of the configuration file.
type scalar struct {
	text   string
	quoted bool
	line   int
}

// parseFlat reads client.yaml: a flat YAML mapping of keys to scalars, the
// only shape the file has. It is a parser of that subset rather than a YAML
// library because the kiln command reads the file on every compiler call,
// and linking a YAML library costs its start-up about 70 page faults (2 ms
// on a VM). Accepted: blank lines, # comments (whole-line or after a
// value), one leading "---", "key: value" at column 0 with a plain,
// 'single-quoted' or "double-quoted" value, and an empty value (null: the
// key is left at its default). Anything else (indentation, flow or block
// collections, anchors, tags, multi-line scalars, a key given twice, tabs)
// is an error naming its line.
func parseFlat(data []byte) (map[string]scalar, error) {
	out := map[string]scalar{}
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	for i, line := range lines {
		n := i + 1
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") || (trimmed == "---" && len(out) == 0) {
			continue
		}
		if strings.ContainsRune(line, '\t') {
			return nil, fmt.Errorf("line %d: tab character (use spaces)", n)
		}
		if line[0] == ' ' {
			return nil, fmt.Errorf("line %d: indented: the file is a flat list of key: value lines", n)
		}
		key, rest, ok := strings.Cut(line, ":")
		if !ok || (rest != "" && rest[0] != ' ') {
			return nil, fmt.Errorf("line %d: want key: value", n)
		}
		if key == "" || strings.Trim(key, "abcdefghijklmnopqrstuvwxyz_") != "" {
			return nil, fmt.Errorf("line %d: key %q: want lower-case letters and _", n, key)
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("line %d: key %q given twice", n, key)
		}
		v, err := parseScalar(strings.TrimLeft(rest, " "))
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", n, key, err)
		}
		v.line = n
		out[key] = v
	}
	return out, nil
}

// parseScalar reads a value and an optional trailing comment.
func parseScalar(s string) (scalar, error) {
	switch {
	case s == "" || s[0] == '#':
		return scalar{}, nil
	case s[0] == '"':
		end := 1
		for ; end < len(s); end++ {
			if s[end] == '\\' {
				end++
			} else if s[end] == '"' {
				break
			}
		}
		if end >= len(s) {
			return scalar{}, fmt.Errorf("unterminated double-quoted value")
		}
		text, err := strconv.Unquote(s[:end+1])
		if err != nil {
			return scalar{}, fmt.Errorf("double-quoted value: %w", err)
		}
		return scalar{text: text, quoted: true}, trailing(s[end+1:])
	case s[0] == '\'':
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			if s[i] != '\'' {
				b.WriteByte(s[i])
				continue
			}
			if i+1 < len(s) && s[i+1] == '\'' {
				b.WriteByte('\'')
				i++
				continue
			}
			return scalar{text: b.String(), quoted: true}, trailing(s[i+1:])
		}
		return scalar{}, fmt.Errorf("unterminated single-quoted value")
	case strings.ContainsRune("[]{}&*!|>%@`,", rune(s[0])) || (s[0] == '-' && (len(s) == 1 || s[1] == ' ')) || (s[0] == '?' && (len(s) == 1 || s[1] == ' ')):
		return scalar{}, fmt.Errorf("value %q: only plain or quoted scalars are allowed", s)
	}
	text := s
	if i := strings.Index(s, " #"); i >= 0 {
		text = s[:i]
	}
	text = strings.TrimRight(text, " ")
	if strings.Contains(text, ": ") {
		return scalar{}, fmt.Errorf("value %q: a nested mapping is not allowed", text)
	}
	return scalar{text: text}, nil
}

// trailing accepts what may follow a quoted value: spaces and a comment.
func trailing(s string) error {
	t := strings.TrimLeft(s, " ")
	if t == "" || (t[0] == '#' && len(t) < len(s)) {
		return nil
	}
	return fmt.Errorf("unexpected %q after the quoted value", s)
}

// yamlBool parses YAML 1.2's core-schema booleans.
func yamlBool(v scalar) (bool, error) {
	if !v.quoted {
		switch v.text {
		case "true", "True", "TRUE":
			return true, nil
		case "false", "False", "FALSE":
			return false, nil
		}
	}
	return false, fmt.Errorf("%q is not a boolean (true or false)", v.text)
}
