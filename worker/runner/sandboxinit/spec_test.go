package sandboxinit

import (
	"bytes"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

func TestConstantsAgreeWithC(t *testing.T) {
	goSide := map[string]any{
		"Arg0": Arg0, "Env": Env, "DefaultPath": DefaultPath,
		"specMagic": uint32(specMagic), "reportMagic": uint32(reportMagic), "specMax": specMax,
		"CodeInvalidArgument": uint32(CodeInvalidArgument), "CodeInternal": uint32(CodeInternal),
	}
	if c := cConstants(); !reflect.DeepEqual(c, goSide) {
		t.Fatalf("init.h has %v, Go %v", c, goSide)
	}
	if uint32(flagProbe|flagHermetic|flagNetwork|flagSetIDs) != 15 {
		t.Fatal("flag bits changed: update KILN_SPEC_KNOWN in init.h")
	}
}

var specs = []Spec{
	{Args: []string{"/bin/true"}, Dir: "/", BuildDir: "/"},
	{
		Probe: true, Hermetic: true, Network: true, SetIDs: true, UID: 65534, GID: 4294967295,
		Limits: Limits{Processes: 1, OpenFiles: 100, FileSizeBytes: 1 << 40, MemoryBytes: -1},
		Args:   []string{"gcc", "-c", "", "a b\tc", "caf\xc3\xa9", "\xff"},
		Env:    []string{"PATH=/usr/bin", "X="}, Dir: "/w/kiln-work", BuildDir: "/w",
		Covers: []string{"/var/lib/kiln", "/srv"},
	},
}

func TestSpecRoundTripThroughC(t *testing.T) {
	for _, s := range specs {
		data, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		got, ok := cParseSpec(data)
		if !ok || !reflect.DeepEqual(*got, s) {
			t.Fatalf("C parsed %+v, %v; want %+v", got, ok, s)
		}
		// Every strict prefix, and any byte more, is refused.
		for i := range data {
			if _, ok := cParseSpec(data[:i]); ok {
				t.Fatalf("C accepted the first %d of %d bytes", i, len(data))
			}
		}
		if _, ok := cParseSpec(append(data, 0)); ok {
			t.Fatal("C accepted a trailing byte")
		}
	}
}

func TestSpecsTheInitRefuses(t *testing.T) {
	good := specs[0]
	for name, s := range map[string]Spec{
		"NoArgs":          {Dir: "/", BuildDir: "/"},
		"RelativeDir":     {Args: []string{"x"}, Dir: "w", BuildDir: "/"},
		"RelativeBuild":   {Args: []string{"x"}, Dir: "/", BuildDir: "b"},
		"NULInArgument":   {Args: []string{"a\x00b"}, Dir: "/", BuildDir: "/"},
		"NULInEnviroment": {Args: []string{"x"}, Env: []string{"A=\x00"}, Dir: "/", BuildDir: "/"},
	} {
		data, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := cParseSpec(data); ok {
			t.Errorf("%s: C accepted %+v", name, s)
		}
	}
	data, _ := good.MarshalBinary()
	data[4] |= 16 // an unknown flag
	if _, ok := cParseSpec(data); ok {
		t.Error("C accepted an unknown flag")
	}
	if _, err := (&Spec{Args: []string{"x"}, UID: -1}).MarshalBinary(); err == nil {
		t.Error("a negative uid was encoded")
	}
}

// FuzzParseSpec: whatever the init's parser accepts, Go encodes back to
// the same bytes (one encoding per spec, nothing skipped or misread).
func FuzzParseSpec(f *testing.F) {
	for _, s := range specs {
		data, _ := s.MarshalBinary()
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, ok := cParseSpec(data)
		if !ok {
			return
		}
		again, err := s.MarshalBinary()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("parsed %+v, which encodes to %x (%v), from %x", s, again, err, data)
		}
	})
}

func TestReportRoundTripFromC(t *testing.T) {
	for _, tc := range []struct {
		r   Report
		sig int
	}{
		{Report{ExitCode: 0, UserTime: time.Millisecond, SystemTime: 2 * time.Second, MaxRSSBytes: 1 << 33}, 0},
		{Report{ExitCode: 137, Signal: "SIGKILL"}, int(unix.SIGKILL)},
		{Report{ExitCode: -1}, 0},
		{Report{Code: CodeInvalidArgument, Message: `program "x" not found in the default PATH /bin:/usr/bin (the command sets no PATH)`}, 0},
	} {
		data := cEncodeReport(tc.r, tc.sig)
		got, err := UnmarshalReport(data)
		if err != nil || got != tc.r {
			t.Fatalf("%+v came back as %+v, %v", tc.r, got, err)
		}
		for i := range data {
			if _, err := UnmarshalReport(data[:i]); err == nil {
				t.Fatalf("accepted the first %d of %d bytes", i, len(data))
			}
		}
	}
}

// FuzzUnmarshalReport: no input makes the decoder fail other than with an
// error, and what it accepts the init would have written that way.
func FuzzUnmarshalReport(f *testing.F) {
	f.Add(cEncodeReport(Report{ExitCode: 1, Message: "m"}, 9))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := UnmarshalReport(data)
		if err != nil {
			return
		}
		sig := 0
		if r.Signal != "" {
			sig = int(unix.SignalNum(r.Signal))
			if sig == 0 {
				return // a number without a name: shown as "signal N"
			}
		}
		if again := cEncodeReport(r, sig); !bytes.Equal(again, data) {
			t.Fatalf("decoded %+v, which the init encodes as %x, from %x", r, again, data)
		}
	})
}

func TestQuoteMatchesGo(t *testing.T) {
	// The init's error messages quote names as LookPath's %q does.
	for _, s := range []string{
		"", "gcc", "/usr/bin/x86_64-linux-gnu-gcc-12", `say "hi"`, `C:\path`, "a b\tc\nd\re\a\b\f\v",
		"\x01\x1f\x7f", "caf\xc3\xa9", "中文", "😀", "\xff", "\xc3", "\xc3(", "\xe2\x82", "\xed\xa0\x80",
		"\xf4\x90\x80\x80", "\xc0\xaf", "\u0085", "\u00a0", "\u00ad", "\u200b", "\u2028", "\ufeff", "\ue000",
		"\U000f0000", "\ufffe", "x\u0301", "Ωμέγα",
	} {
		if got, want := cQuote(s), strconv.Quote(s); got != want {
			t.Errorf("C quotes %q as %s", s, got)
		}
	}
}

// FuzzQuote: C and Go agree on every string whose runes are ASCII or
// invalid bytes (beyond ASCII, C approximates Unicode's tables).
func FuzzQuote(f *testing.F) {
	f.Add("a\"b\\c\n\xff")
	f.Fuzz(func(t *testing.T, s string) {
		if strings.IndexByte(s, 0) >= 0 {
			return
		}
		for i, w := 0, 0; i < len(s); i += w {
			var r rune
			r, w = utf8.DecodeRuneInString(s[i:])
			if r >= utf8.RuneSelf && r != utf8.RuneError {
				return
			}
		}
		if got, want := cQuote(s), strconv.Quote(s); got != want {
			t.Fatalf("C quotes %q as %s", s, got)
		}
	})
}
