package lru_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/cas/lru"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// op is one step of a scenario against an Index[string, int] of max 100.
// Each op is written as a string and the test checks its result string:
//
//	"insert k size" -> "new" or "replaced OLDVALUE" (value is the step number)
//	"reserve n"     -> "ok evicted=[a b]" or the error code
//	"release n", "touch k", "get k", "remove k", "trim"
type step struct {
	op   string
	want string
}

func TestIndexScenarios(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		// order is the keys from least to most recently used at the end.
		order          []string
		used, reserved int64
	}{
		{
			name: "InsertCountsSize",
			// Plain inserts add up and keep insertion order.
			steps: []step{{"insert a 10", "new"}, {"insert b 20", "new"}},
			order: []string{"a", "b"}, used: 30,
		},
		{
			name: "InsertIsIdempotent",
			// Inserting a present key refreshes it and counts it once.
			steps: []step{{"insert a 10", "new"}, {"insert b 10", "new"}, {"insert a 10", "replaced 0"}},
			order: []string{"b", "a"}, used: 20,
		},
		{
			name: "InsertReplacesSize",
			// A new size for a present key replaces the old one.
			steps: []step{{"insert a 10", "new"}, {"insert a 30", "replaced 0"}},
			order: []string{"a"}, used: 30,
		},
		{
			name: "ReserveEvictsOldestFirst",
			// Room for 50 bytes evicts a and b (40 bytes) but not c.
			steps: []step{
				{"insert a 20", "new"}, {"insert b 20", "new"}, {"insert c 20", "new"}, {"insert d 20", "new"},
				{"reserve 50", "ok evicted=[a b]"},
			},
			order: []string{"c", "d"}, used: 40, reserved: 50,
		},
		{
			name: "GetAndTouchRefresh",
			// Reading a and touching b protects them from eviction.
			steps: []step{
				{"insert a 30", "new"}, {"insert b 30", "new"}, {"insert c 30", "new"},
				{"get a", "0 true"}, {"touch b", "true"},
				{"reserve 20", "ok evicted=[c]"},
			},
			order: []string{"a", "b"}, used: 60, reserved: 20,
		},
		{
			name: "PeekDoesNotRefresh",
			// Peek reads the value but a stays the oldest.
			steps: []step{
				{"insert a 50", "new"}, {"insert b 50", "new"},
				{"peek a", "0 true"}, {"reserve 10", "ok evicted=[a]"},
			},
			order: []string{"b"}, used: 50, reserved: 10,
		},
		{
			name: "ReserveLargerThanMax",
			// A blob larger than the store fails and evicts nothing.
			steps: []step{{"insert a 10", "new"}, {"reserve 101", "ResourceExhausted: 101 bytes do not fit in a store of 100 bytes"}},
			order: []string{"a"}, used: 10,
		},
		{
			name: "ReserveBlockedByReservations",
			// Reserved space cannot be evicted: the second upload fails without evicting.
			steps: []step{
				{"insert a 10", "new"},
				{"reserve 60", "ok evicted=[]"},
				{"reserve 50", "ResourceExhausted: 50 bytes do not fit: 60 of 100 bytes are reserved by uploads in progress"},
				{"release 60", ""},
				{"reserve 50", "ok evicted=[]"},
			},
			order: []string{"a"}, used: 10, reserved: 50,
		},
		{
			name: "ReserveExactlyMax",
			// The whole store can be reserved, evicting everything.
			steps: []step{{"insert a 10", "new"}, {"insert b 10", "new"}, {"reserve 100", "ok evicted=[a b]"}},
			order: nil, used: 0, reserved: 100,
		},
		{
			name: "ReserveZero",
			// A zero-byte reservation (the empty blob) always succeeds on a full store.
			steps: []step{{"insert a 100", "new"}, {"reserve 0", "ok evicted=[]"}},
			order: []string{"a"}, used: 100,
		},
		{
			name: "CommitMovesReservationToEntry",
			// Release then Insert: the space is used once, nothing evicted.
			steps: []step{
				{"insert a 50", "new"}, {"reserve 50", "ok evicted=[]"}, {"release 50", ""}, {"insert b 40", "new"},
			},
			order: []string{"a", "b"}, used: 90,
		},
		{
			name: "RemoveFreesSpace",
			// Remove returns the value and frees the entry's bytes.
			steps: []step{{"insert a 50", "new"}, {"insert b 50", "new"}, {"remove a", "0 true"}, {"remove a", "0 false"}, {"reserve 50", "ok evicted=[]"}},
			order: []string{"b"}, used: 50, reserved: 50,
		},
		{
			name: "FreedNodesAreReused",
			// Insert after Remove and eviction keeps the list consistent.
			steps: []step{
				{"insert a 40", "new"}, {"insert b 40", "new"}, {"remove a", "0 true"},
				{"insert c 40", "new"}, {"reserve 40", "ok evicted=[b]"}, {"release 40", ""}, {"insert d 40", "new"},
			},
			order: []string{"c", "d"}, used: 80,
		},
		{
			name: "TrimAfterUnreservedInserts",
			// Inserts without reservation may overfill; Trim evicts the oldest.
			steps: []step{{"insert a 60", "new"}, {"insert b 60", "new"}, {"insert c 30", "new"}, {"trim", "[a]"}},
			order: []string{"b", "c"}, used: 90,
		},
		{
			name: "MissingKeys",
			// Operations on absent keys report absence.
			steps: []step{{"get x", "0 false"}, {"touch x", "false"}, {"peek x", "0 false"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := lru.New[string, int](100, 0)
			for i, s := range tc.steps {
				if got := apply(x, i, s.op); got != s.want {
					t.Fatalf("step %d %q = %q, want %q", i, s.op, got, s.want)
				}
			}
			var order []string
			for e := range x.All() {
				order = append(order, e.Key)
			}
			if !slices.Equal(order, tc.order) {
				t.Errorf("order = %v, want %v", order, tc.order)
			}
			if x.Used() != tc.used || x.Reserved() != tc.reserved || x.Len() != len(tc.order) {
				t.Errorf("used, reserved, len = %d, %d, %d, want %d, %d, %d", x.Used(), x.Reserved(), x.Len(), tc.used, tc.reserved, len(tc.order))
			}
		})
	}
}

func apply(x *lru.Index[string, int], step int, op string) string {
	f := strings.Fields(op)
	var n int64
	if len(f) > 2 {
		fmt.Sscan(f[2], &n)
	}
	switch f[0] {
	case "insert":
		old, replaced := x.Insert(f[1], step, n)
		if replaced {
			return fmt.Sprintf("replaced %d", old)
		}
		return "new"
	case "reserve":
		fmt.Sscan(f[1], &n)
		victims, err := x.Reserve(n)
		if err != nil {
			s := status.Convert(err)
			return s.Code().String() + ": " + s.Message()
		}
		return "ok evicted=" + keys(victims)
	case "release":
		fmt.Sscan(f[1], &n)
		x.Release(n)
		return ""
	case "get":
		v, ok := x.Get(f[1])
		return fmt.Sprint(v, " ", ok)
	case "peek":
		v, ok := x.Peek(f[1])
		return fmt.Sprint(v, " ", ok)
	case "touch":
		return fmt.Sprint(x.Touch(f[1]))
	case "remove":
		v, ok := x.Remove(f[1])
		return fmt.Sprint(v, " ", ok)
	case "trim":
		return keys(x.Trim())
	}
	panic("unknown op " + op)
}

func keys(es []lru.Entry[string, int]) string {
	var ks []string
	for _, e := range es {
		ks = append(ks, e.Key)
	}
	return "[" + strings.Join(ks, " ") + "]"
}

func TestReserveErrorIsResourceExhausted(t *testing.T) {
	x := lru.New[string, int](10, 0)
	_, err := x.Reserve(11)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("Reserve(11) = %v, want ResourceExhausted", err)
	}
}

func TestReleaseMoreThanReservedPanics(t *testing.T) {
	x := lru.New[string, int](10, 0)
	defer func() {
		if recover() == nil {
			t.Fatal("Release(1) without a reservation did not panic")
		}
	}()
	x.Release(1)
}

// TestManyEntries checks the list stays consistent through many operations
// against a simple model.
func TestManyEntries(t *testing.T) {
	const max = 1000
	x := lru.New[int, int](max, 0)
	var model []int // keys, oldest first
	size := func(k int) int64 { return int64(k%7 + 1) }
	for i := 0; i < 20000; i++ {
		k := (i * 7919) % 501
		switch i % 5 {
		case 0, 1, 2:
			victims, err := x.Reserve(size(k))
			if err != nil {
				t.Fatal(err)
			}
			var used int64
			for _, m := range model {
				used += size(m)
			}
			for _, v := range victims {
				if v.Key != model[0] {
					t.Fatalf("step %d: evicted %d, want %d", i, v.Key, model[0])
				}
				model = model[1:]
			}
			x.Release(size(k))
			x.Insert(k, i, size(k))
			model = slices.DeleteFunc(model, func(m int) bool { return m == k })
			model = append(model, k)
		case 3:
			if x.Touch(k) {
				model = slices.DeleteFunc(model, func(m int) bool { return m == k })
				model = append(model, k)
			}
		case 4:
			x.Remove(k)
			model = slices.DeleteFunc(model, func(m int) bool { return m == k })
		}
	}
	var got []int
	for e := range x.All() {
		got = append(got, e.Key)
	}
	if !slices.Equal(got, model) {
		t.Fatalf("order = %v, want %v", got, model)
	}
	if x.Used() > max {
		t.Fatalf("used %d > max %d", x.Used(), max)
	}
}
