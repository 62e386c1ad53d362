package cmdline_test

import (
	"errors"
	"io/fs"
	"path"
	"reflect"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/wrapper/cmdline"
)

func TestSplitResponseFile(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []string
	}{
		// The expectations were checked with gcc -### @file (gcc 12).
		{"Whitespace", " -c\tx.c\n\n-o  x.o \r\n", []string{"-c", "x.c", "-o", "x.o"}},
		{"SingleQuotes", `-DA='x y'`, []string{"-DA=x y"}},
		{"DoubleQuotes", `-DB="p q"`, []string{"-DB=p q"}},
		{"BackslashSpace", `-DC=a\ b`, []string{"-DC=a b"}},
		{"BackslashInSingleQuotes", `-DD='it\'s'`, []string{"-DD=it's"}},
		{"EscapedDoubleQuotes", `"-DE=\"q\""`, []string{`-DE="q"`}},
		{"BackslashTab", "-DF=tab\\\tx", []string{"-DF=tab\tx"}},
		{"DoubleInSingle", `-DG='a"b'`, []string{`-DG=a"b`}},
		{"SingleInDouble", `-DH="a'b"`, []string{`-DH=a'b`}},
		{"Adjacent", `a"b c"'d e'f`, []string{"ab cd ef"}},
		{"EmptyQuoted", `'' ""`, []string{"", ""}},
		{"OnlyWhitespace", " \n\t ", nil},
		{"Empty", "", nil},
		{"UnterminatedQuote", `-DX="abc`, []string{"-DX=abc"}},
		{"TrailingBackslash", `a\`, []string{"a"}},
		{"PathWithSpaces", `-I "C:/Program Files/x" '/opt/my lib/x.c'`, []string{"-I", "C:/Program Files/x", "/opt/my lib/x.c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := cmdline.SplitResponseFile(tc.in); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("SplitResponseFile(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// files is an in-memory file system for response files.
type files map[string]string

func (f files) read(name string) ([]byte, error) {
	if name == "dir.rsp" {
		return nil, errors.New("is a directory")
	}
	s, ok := f[path.Clean(name)]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return []byte(s), nil
}

func TestResponseFiles(t *testing.T) {
	deep := files{}
	for i := 0; i < 20; i++ {
		deep[string(rune('a'+i))+".rsp"] = "@" + string(rune('a'+i+1)) + ".rsp"
	}
	wide := files{}
	for i := 0; i < 12; i++ {
		// Each level names the next twice: 2^12 expansions without a limit.
		next := "@l" + string(rune('a'+i+1)) + ".rsp"
		wide["l"+string(rune('a'+i))+".rsp"] = next + " " + next
	}
	for _, tc := range []struct {
		name    string
		files   files
		args    string
		want    string // the expanded arguments, space separated
		wantErr string // the error's message, code InvalidArgument
	}{
		// CMake writes includes and flags to .rsp files for long lines.
		{"CMakeStyle", files{"CMakeFiles/x.dir/includes_C.rsp": "-I/src/a -I/src/b\n-isystem /sys\n"}, "-c x.c @CMakeFiles/x.dir/includes_C.rsp -o x.o",
			"-c x.c -I/src/a -I/src/b -isystem /sys -o x.o", ""},
		{"Nested", files{"a.rsp": "-DA @b.rsp -DC", "b.rsp": "-DB"}, "@a.rsp -c x.c", "-DA -DB -DC -c x.c", ""},
		// A file named twice (not nested) is no loop.
		{"Twice", files{"a.rsp": "-DA"}, "@a.rsp @a.rsp", "-DA -DA", ""},
		// Empty and whitespace-only files contribute nothing.
		{"EmptyFile", files{"e.rsp": " \n"}, "-c @e.rsp x.c", "-c x.c", ""},
		// A missing file stays a literal argument, as in gcc.
		{"Missing", files{}, "-c x.c @nope.rsp", "-c x.c @nope.rsp", ""},
		// So does a lone "@".
		{"LoneAt", files{}, "-c @ x.c", "-c @ x.c", ""},
		{"SelfLoop", files{"self.rsp": "-DX @self.rsp"}, "-c @self.rsp", "", "response file loop: @self.rsp -> @self.rsp"},
		{"Loop", files{"a.rsp": "@b.rsp", "b.rsp": "@./c.rsp", "c.rsp": "@a.rsp"}, "@a.rsp", "", "response file loop: @a.rsp -> @b.rsp -> @c.rsp -> @a.rsp"},
		{"TooDeep", deep, "@a.rsp", "", "response files nested more than 16 deep: @a.rsp -> @b.rsp -> @c.rsp -> @d.rsp -> @e.rsp -> @f.rsp -> @g.rsp -> @h.rsp -> @i.rsp -> @j.rsp -> @k.rsp -> @l.rsp -> @m.rsp -> @n.rsp -> @o.rsp -> @p.rsp -> @q.rsp"},
		{"TooMany", wide, "@la.rsp", "", "more than 1000 response files"},
		{"ReadError", files{}, "@dir.rsp", "", "response file dir.rsp: is a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv, err := cmdline.Parse("gcc", strings.Fields(tc.args), tc.files.read)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(inv.Args, " "); got != tc.want {
				t.Errorf("Args = %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("QuotedPathsInFile", func(t *testing.T) {
		// A response file with spaces and quotes in paths feeds the parser.
		inv, err := cmdline.Parse("g++", []string{"@args.rsp"}, files{"args.rsp": `-c "my src/it's.cc" -o 'out dir/x.o' '-DMSG="hi there"'`}.read)
		if err != nil {
			t.Fatal(err)
		}
		if !inv.Decision.Remote || inv.Source != "my src/it's.cc" || inv.Output != "out dir/x.o" {
			t.Fatalf("%+v", inv)
		}
		if want := []string{`-DMSG="hi there"`}; !reflect.DeepEqual(inv.PreprocessorFlags, want) {
			t.Fatalf("PreprocessorFlags = %q", inv.PreprocessorFlags)
		}
	})
}
