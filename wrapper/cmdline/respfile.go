package cmdline

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

const (
	// maxResponseDepth bounds the nesting of response files (@a naming @b
	// naming @c ...). Real builds nest one or two levels.
	maxResponseDepth = 16
	// maxResponseFiles bounds the number of response files read for one
	// command line, so that a file naming another twice, nested deeply,
	// cannot blow up exponentially. gcc stops at 2000 ("too many @-files
	// encountered").
	maxResponseFiles = 1000
)

// expander expands response files for one command line.
type expander struct {
	readFile func(string) ([]byte, error)
	stack    []string // response files being expanded, outermost first
	count    int      // response files read so far
}

// expandResponseFiles replaces every argument "@file" by the arguments
// file holds, recursively, as gcc's driver does (libiberty expandargv):
//
//   - file names are used as written; relative names are relative to the
//     working directory, also inside another response file;
//   - a file that does not exist leaves "@file" as a literal argument
//     (gcc then reports it as a missing input), and so does a lone "@";
//   - a file holding only whitespace contributes no arguments.
//
// A file that includes itself, directly or through others, is an
// InvalidArgument error naming the chain, as is nesting deeper than
// maxResponseDepth or reading more than maxResponseFiles files. Other read
// errors are returned with the file's name.
func expandResponseFiles(args []string, readFile func(string) ([]byte, error)) ([]string, error) {
	// The common case, no response file at all, allocates nothing.
	has := false
	for _, a := range args {
		if len(a) > 1 && a[0] == '@' {
			has = true
			break
		}
	}
	if !has {
		return args, nil
	}
	e := &expander{readFile: readFile}
	return e.expand(args, nil)
}

func (e *expander) expand(args, out []string) ([]string, error) {
	for _, a := range args {
		if len(a) < 2 || a[0] != '@' {
			out = append(out, a)
			continue
		}
		name := a[1:]
		key := filepath.Clean(name)
		for i, s := range e.stack {
			if s == key {
				chain := append(append([]string(nil), e.stack[i:]...), key)
				return nil, fmt.Errorf("response file loop: @%s", strings.Join(chain, " -> @"))
			}
		}
		if len(e.stack) >= maxResponseDepth {
			return nil, fmt.Errorf("response files nested more than %d deep: @%s", maxResponseDepth, strings.Join(append(e.stack, key), " -> @"))
		}
		if e.count >= maxResponseFiles {
			return nil, fmt.Errorf("more than %d response files", maxResponseFiles)
		}
		e.count++
		data, err := e.readFile(name)
		if errors.Is(err, fs.ErrNotExist) {
			out = append(out, a)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("response file %s: %v", name, err)
		}
		e.stack = append(e.stack, key)
		out, err = e.expand(SplitResponseFile(string(data)), out)
		if err != nil {
			return nil, err
		}
		e.stack = e.stack[:len(e.stack)-1]
	}
	return out, nil
}

// SplitResponseFile splits the contents of a response file into arguments
// with gcc's rules (libiberty buildargv): whitespace separates arguments;
// single and double quotes group, and the quote characters are removed; a
// backslash makes the next character literal everywhere, even inside
// single quotes (so 'it\'s' is it's). A quoted empty string (two quotes
// in a row) is an empty argument. Text holding only whitespace yields no
// arguments.
func SplitResponseFile(s string) []string {
	var (
		out    []string
		cur    strings.Builder
		inArg  bool // cur holds an argument, possibly empty ('')
		squote bool
		dquote bool
		bslash bool
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case bslash:
			bslash = false
			cur.WriteByte(c)
			inArg = true
		case c == '\\':
			bslash = true
			inArg = true
		case squote:
			if c == '\'' {
				squote = false
			} else {
				cur.WriteByte(c)
			}
		case dquote:
			if c == '"' {
				dquote = false
			} else {
				cur.WriteByte(c)
			}
		case isSpace(c):
			if inArg {
				out = append(out, cur.String())
				cur.Reset()
				inArg = false
			}
		case c == '\'':
			squote = true
			inArg = true
		case c == '"':
			dquote = true
			inArg = true
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	if inArg {
		out = append(out, cur.String())
	}
	return out
}

// isSpace is libiberty's ISSPACE: the C locale's white space.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}
