package disk

// Exported for the external tests of package disk_test only.
var (
	ParseFileName  = parseFileName
	AppendFileName = appendFileName
)

// ParseSnapshot reports whether data parses as a snapshot, and how many
// entries it holds.
func ParseSnapshot(data []byte) (int, bool) {
	recs, ok := parseSnapshot(data)
	return len(recs), ok
}
