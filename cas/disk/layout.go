package disk

import (
	"encoding/binary"
	"hash/crc32"
	"strconv"

	"github.com/kiln-build/kiln/cas/digest"
)

const (
	// trailerLen is the length of the trailer at the end of every blob file:
	// trailerMagic followed by the CRC-32C of the content, little endian.
	trailerLen = 8
	// trailerMagic starts the trailer. The last byte is the format version.
	trailerMagic = "kln\x01"
	// blockSize is the allocation unit that the space accounting rounds
	// file lengths up to (ext4 and xfs allocate 4 KiB blocks).
	blockSize = 4096
	// tmpPrefix starts the names of files being written. It cannot start a
	// blob file name, which starts with a hex digit.
	tmpPrefix = "tmp-"
	// snapshotName is the LRU-order snapshot written by Close.
	snapshotName = "lru-snapshot"
	// lockName is the file locked while a Store uses the directory.
	lockName = "LOCK"
)

// castagnoli is the CRC-32C table; crc32 uses the SSE 4.2 / ARMv8 CRC
// instructions for it, several GB/s per core.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// diskUsage is what a blob with contentLen bytes of content is charged in
// the index: its file length rounded up to whole blocks.
func diskUsage(contentLen int64) int64 {
	return (contentLen + trailerLen + blockSize - 1) / blockSize * blockSize
}

// appendTrailer appends the trailer for content with CRC-32C crc.
func appendTrailer(b []byte, crc uint32) []byte {
	b = append(b, trailerMagic...)
	return binary.LittleEndian.AppendUint32(b, crc)
}

// checkTrailer reports whether t is a valid trailer for content with
// CRC-32C crc.
func checkTrailer(t []byte, crc uint32) bool {
	return len(t) == trailerLen && string(t[:4]) == trailerMagic && binary.LittleEndian.Uint32(t[4:]) == crc
}

// appendFileName appends the name of the file holding d with contentLen
// bytes of content: "{hex}-{size}", or "{hex}-{size}-{contentLen}" when the
// content length differs from the digest's size (action-cache entries).
func appendFileName(b []byte, d digest.Digest, contentLen int64) []byte {
	b = appendHex(b, d.RawHash())
	b = append(b, '-')
	b = strconv.AppendInt(b, d.Size(), 10)
	if contentLen != d.Size() {
		b = append(b, '-')
		b = strconv.AppendInt(b, contentLen, 10)
	}
	return b
}

const hexDigits = "0123456789abcdef"

func appendHex(b, raw []byte) []byte {
	for _, c := range raw {
		b = append(b, hexDigits[c>>4], hexDigits[c&15])
	}
	return b
}

// parseFileName parses a blob file name made by appendFileName for a
// function with hashes of hashSize bytes. It accepts exactly the names that
// appendFileName produces (lowercase hex, canonical decimals, the third
// field only when it differs from the second), so every blob has one name.
func parseFileName(name string, hashSize int) (raw [digest.MaxHashSize]byte, size, contentLen int64, ok bool) {
	if len(name) < 2*hashSize+2 || name[2*hashSize] != '-' {
		return raw, 0, 0, false
	}
	for i := 0; i < hashSize; i++ {
		hi, ok1 := unhex(name[2*i])
		lo, ok2 := unhex(name[2*i+1])
		if !ok1 || !ok2 {
			return raw, 0, 0, false
		}
		raw[i] = hi<<4 | lo
	}
	rest := name[2*hashSize+1:]
	sizeStr, lenStr, two := cut(rest)
	size, ok = parseDecimal(sizeStr)
	if !ok {
		return raw, 0, 0, false
	}
	contentLen = size
	if two {
		contentLen, ok = parseDecimal(lenStr)
		if !ok || contentLen == size {
			return raw, 0, 0, false
		}
	}
	return raw, size, contentLen, true
}

func cut(s string) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '-' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// parseDecimal parses a canonical non-negative decimal int64: no sign, no
// leading zeros (except "0" itself).
func parseDecimal(s string) (int64, bool) {
	if s == "" || len(s) > 1 && s[0] == '0' || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
