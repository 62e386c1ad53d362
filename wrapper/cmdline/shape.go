package cmdline

import "sort"

// ShapeOption is one option of the table as far as the shape of a command
// line goes: which tokens are options, which take the next token as their
// argument, and which ask the compiler something. The kiln command's C
// fast path (wrapper/fastpath) is generated from Shape, so that it reads
// command lines exactly as Parse does.
type ShapeOption struct {
	Name string
	// Separate: written as the whole token, the option takes the next
	// token as its argument (else it is a flag).
	Separate bool
	// JoinedOnly: the option is matched only as a prefix ("-std="); the
	// name alone is the option with an empty argument.
	JoinedOnly bool
	// Query: the option asks the compiler something (ReasonQuery).
	Query bool
}

// Shape returns the options matched as whole tokens (in table order) and
// the options matched as prefixes with a joined argument, in the order
// lookupPrefix tries them: longest name first, table order among equals.
// Only the first two characters group prefixes in lookupPrefix, and a
// name that prefixes a token shares them, so one list in this order finds
// the same option.
func Shape() (exact, prefix []ShapeOption) {
	for _, o := range optionTable {
		s := ShapeOption{Name: o.name, Separate: o.kind != kindFlag, JoinedOnly: o.kind == kindJoined, Query: o.local == ReasonQuery}
		if o.kind != kindJoined {
			exact = append(exact, s)
		}
		if o.kind == kindJoined || o.kind == kindJoinedOrSeparate {
			prefix = append(prefix, s)
		}
	}
	sort.SliceStable(prefix, func(i, j int) bool { return len(prefix[i].Name) > len(prefix[j].Name) })
	return exact, prefix
}
