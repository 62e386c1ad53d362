package units_test

import (
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/units"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want int64
	}{
		{"PlainBytes", "1024", 1024},                            // no suffix means bytes
		{"Zero", "0", 0},                                        // zero is a size
		{"ByteSuffix", "17B", 17},                               // B alone is bytes
		{"LowerK", "1k", 1024},                                  // bare letters are binary
		{"UpperK", "1K", 1024},                                  // in either case
		{"KB", "1KB", 1000},                                     // two-letter SI forms are decimal
		{"KiB", "64KiB", 64 << 10},                              // i-forms are binary
		{"LowerKib", "64kib", 64 << 10},                         // suffixes are case-insensitive
		{"M", "2M", 2 << 20},                                    // megabytes, binary
		{"MB", "2MB", 2e6},                                      // megabytes, decimal
		{"MiB", "64MiB", 64 << 20},                              // mebibytes
		{"LowerG", "3g", 3 << 30},                               // gigabytes, binary
		{"GB", "3GB", 3e9},                                      // gigabytes, decimal
		{"GiB", "1GiB", 1 << 30},                                // gibibytes
		{"T", "1T", 1 << 40},                                    // terabytes, binary
		{"TB", "1TB", 1e12},                                     // terabytes, decimal
		{"TiB", "2TiB", 2 << 40},                                // tebibytes
		{"PiB", "1PiB", 1 << 50},                                // pebibytes
		{"SpaceBeforeUnit", "64 KiB", 64 << 10},                 // as people write it
		{"SurroundingSpace", " 8M ", 8 << 20},                   // flags from scripts
		{"Fraction", "1.5KiB", 1536},                            // whole number of bytes
		{"FractionDecimal", "2.5MB", 2500000},                   // decimal fraction
		{"LeadingDot", ".5k", 512},                              // no leading zero
		{"MaxInt64", "9223372036854775807", math.MaxInt64},      // the largest size
		{"ExactFraction", "8191.99951171875PiB", 1<<63 - 1<<39}, // exact, no float rounding
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := units.ParseSize(tc.in)
			if err != nil {
				t.Fatalf("ParseSize(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseSize(%q) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseSizeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want string
	}{
		{"Empty", "", `size "": want a number of bytes with an optional unit, such as 512, 64KiB or 2M`},
		{"Negative", "-1", `size "-1": must not be negative`},
		{"NegativeWithUnit", "-5MiB", `size "-5MiB": must not be negative`},
		{"PlusSign", "+5", `size "+5": want a number of bytes with an optional unit, such as 512, 64KiB or 2M`},
		{"UnitOnly", "KiB", `size "KiB": want a number of bytes with an optional unit, such as 512, 64KiB or 2M`},
		{"UnknownUnit", "5x", `size "5x": unknown unit "x" (want B, k/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB or P/PB/PiB)`},
		{"BitsAreNotBytes", "5Mbit", `size "5Mbit": unknown unit "Mbit" (want B, k/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB or P/PB/PiB)`},
		{"Exponent", "1e6", `size "1e6": unknown unit "e6" (want B, k/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB or P/PB/PiB)`},
		{"SpaceInNumber", "1 024", `size "1 024": unknown unit "024" (want B, k/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB or P/PB/PiB)`},
		{"TwoDots", "1.2.3k", `size "1.2.3k": "1.2.3" is not a decimal number`},
		{"TrailingDot", "5.k", `size "5.k": "5." is not a decimal number`},
		{"DotOnly", ".", `size ".": "." is not a decimal number`},
		{"FractionalBytes", "0.1k", `size "0.1k": not a whole number of bytes`},
		{"FractionalPlainBytes", "1.5", `size "1.5": not a whole number of bytes`},
		{"Overflow", "9223372036854775808", `size "9223372036854775808": larger than 9223372036854775807 bytes`},
		{"OverflowWithUnit", "8EiB", `size "8EiB": unknown unit "EiB" (want B, k/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB or P/PB/PiB)`},
		{"OverflowByUnit", "8192PiB", `size "8192PiB": larger than 9223372036854775807 bytes`},
		{"OverflowFraction", "8192.5PiB", `size "8192.5PiB": larger than 9223372036854775807 bytes`},
		{"TooLong", strings.Repeat("1", 65), `size "` + strings.Repeat("1", 64) + `…": longer than 64 characters`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := units.ParseSize(tc.in)
			if err == nil {
				t.Fatalf("ParseSize(%q) = %d, want error %q", tc.in, got, tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("ParseSize(%q) error\n got %q\nwant %q", tc.in, err.Error(), tc.want)
			}
		})
	}
}

func TestFormatSize(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   int64
		want string
	}{
		{"Zero", 0, "0 B"},                // bytes below one KiB stay bytes
		{"Bytes", 1023, "1023 B"},         // the largest plain byte count
		{"KiB", 1024, "1 KiB"},            // whole units drop the decimals
		{"Fraction", 1536, "1.5 KiB"},     // trailing zeros trimmed
		{"Rounded", 64<<20 + 1, "64 MiB"}, // two decimals at most
		{"GiB", 5 << 30, "5 GiB"},         // larger units
		{"Max", math.MaxInt64, "8 EiB"},   // the largest size
		{"Negative", -2048, "-2 KiB"},     // deltas can be negative
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := units.FormatSize(tc.in); got != tc.want {
				t.Errorf("FormatSize(%d) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// FuzzParseSize checks that ParseSize never panics, never returns a negative
// size, names its input in every error, and reads back plain byte counts and
// whole binary units exactly.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "1024", "64KiB", "1.5M", "2GB", "-1", "1e3", ".5k", "8192PiB", " 3 t "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := units.ParseSize(s)
		if err != nil {
			quoted := strconv.Quote(s)
			if len(s) > 64 {
				quoted = strconv.Quote(s[:64] + "…")
			}
			if !strings.HasPrefix(err.Error(), "size "+quoted+": ") {
				t.Fatalf("ParseSize(%q) error %q does not name the input", s, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d, want a non-negative size", s, n)
		}
		// Whatever parsed must read back through its plain form.
		if m, err := units.ParseSize(strconv.FormatInt(n, 10)); err != nil || m != n {
			t.Fatalf("ParseSize(%d) = %d, %v after ParseSize(%q) = %d", n, m, err, s, n)
		}
		for _, u := range []struct {
			suffix string
			mult   int64
		}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
			if n%u.mult == 0 {
				in := strconv.FormatInt(n/u.mult, 10) + u.suffix
				if m, err := units.ParseSize(in); err != nil || m != n {
					t.Fatalf("ParseSize(%q) = %d, %v, want %d", in, m, err, n)
				}
			}
		}
	})
}
