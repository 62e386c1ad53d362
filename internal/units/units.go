// Package units parses and prints byte sizes the way people write them on
// command lines and in configuration: "1024", "64KiB", "1.5G", "10MB".
//
// Suffixes are case-insensitive. The "i" forms (KiB, MiB, ...) and the bare
// letters (k, M, g, ...) are binary multiples (1k = 1024), following ls, dd
// and most build tools; the two-letter SI forms (KB, MB, ...) are decimal
// (1KB = 1000). A trailing "B" alone means bytes.
package units

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// multipliers maps each accepted suffix, lowercased, to its value in bytes.
var multipliers = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
	"p": 1 << 50, "pib": 1 << 50, "pb": 1e15,
}

// maxInputLen bounds the input so that arbitrary-precision arithmetic on
// hostile input stays cheap. No real size needs more characters.
const maxInputLen = 64

// ParseSize parses a non-negative byte count: decimal digits with an
// optional fraction, optional spaces, then an optional unit suffix (see the
// package doc). A fraction is allowed only if the result is a whole number
// of bytes ("1.5KiB" is 1536, "0.1k" is an error). Negative numbers, signs,
// exponents, unknown suffixes and results above math.MaxInt64 are errors
// that quote the input.
func ParseSize(s string) (int64, error) {
	if len(s) > maxInputLen {
		return 0, fmt.Errorf("size %q: longer than %d characters", s[:maxInputLen]+"…", maxInputLen)
	}
	t := strings.TrimSpace(s)
	end := 0
	for end < len(t) && (t[end] >= '0' && t[end] <= '9' || t[end] == '.') {
		end++
	}
	num, suffix := t[:end], strings.ToLower(strings.TrimSpace(t[end:]))
	if num == "" {
		if strings.HasPrefix(t, "-") {
			return 0, fmt.Errorf("size %q: must not be negative", s)
		}
		return 0, fmt.Errorf("size %q: want a number of bytes with an optional unit, such as 512, 64KiB or 2M", s)
	}
	mult, ok := multipliers[suffix]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q (want B, k/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB or P/PB/PiB)", s, strings.TrimSpace(t[end:]))
	}
	whole, frac, hasDot := strings.Cut(num, ".")
	if strings.Contains(frac, ".") || (whole == "" && frac == "") || (hasDot && frac == "") {
		return 0, fmt.Errorf("size %q: %q is not a decimal number", s, num)
	}
	if !hasDot {
		// The common case: whole numbers need no big arithmetic.
		n, err := strconv.ParseInt(whole, 10, 64)
		if err != nil || n > math.MaxInt64/mult {
			return 0, fmt.Errorf("size %q: larger than %d bytes", s, int64(math.MaxInt64))
		}
		return n * mult, nil
	}
	// value = digits * mult / 10^len(frac), computed exactly.
	digits, _ := new(big.Int).SetString(whole+frac, 10) // cannot fail: checked above
	v := digits.Mul(digits, big.NewInt(mult))
	scale := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(frac))), nil)
	q, r := new(big.Int).QuoRem(v, scale, new(big.Int))
	if r.Sign() != 0 {
		return 0, fmt.Errorf("size %q: not a whole number of bytes", s)
	}
	if !q.IsInt64() {
		return 0, fmt.Errorf("size %q: larger than %d bytes", s, int64(math.MaxInt64))
	}
	return q.Int64(), nil
}

// FormatSize prints n bytes for people, in the largest binary unit that
// keeps the number at least 1, with up to two decimals: "512 B", "64 KiB",
// "1.5 MiB". The text is for display; it may round, so ParseSize of it need
// not return n exactly.
func FormatSize(n int64) string {
	const units = "KMGTPE"
	if n < 1024 && n > -1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	v := float64(n)
	i := -1
	for math.Abs(v) >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	s := strconv.FormatFloat(v, 'f', 2, 64)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s + " " + units[i:i+1] + "iB"
}
