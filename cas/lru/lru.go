// Package lru is a size-bounded least-recently-used index, the bookkeeping
// shared by the storage backends (cas/memory, cas/disk).
//
// An Index maps keys to values and a size in bytes. It knows nothing about
// where the bytes live: it decides what to evict and hands the victims back
// so that the caller can free their storage.
//
// Space is accounted in two parts, and their sum never exceeds Max:
//
//	+---------------------------+---------------------+-----------+
//	| Used: entries in the index| Reserved: uploads   |   free    |
//	|  (evictable, LRU order)   |  in progress        |           |
//	+---------------------------+---------------------+-----------+
//	0                                                            Max
//
// An upload first calls Reserve for the bytes it expects; that evicts the
// least recently used entries until the reservation fits. When the upload
// completes, the caller Releases the reservation and Inserts the entry in the
// same critical section, so the space moves from Reserved to Used without a
// window in which another upload could take it. Reserved space cannot be
// evicted, so Reserve fails with ResourceExhausted when even evicting every
// entry would not make room.
//
// Locking: an Index holds no lock and is not safe for concurrent use. Every
// backend already needs one mutex around the index and its own state (files
// being unlinked, blobs in memory), so the caller's mutex guards the Index too.
//
// Memory: entries live in one slice of nodes linked by int32 indices, and the
// map holds int32 indices, so when K and V contain no pointers (a
// digest.Digest and an int64, as on disk) the garbage collector never scans
// the index, however many million entries it holds.
package lru

import (
	"iter"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Entry is one key of an Index with its value and size, as returned for
// evicted entries and by All.
type Entry[K comparable, V any] struct {
	Key   K
	Value V
	Size  int64
}

// node is an element of the circular doubly linked recency list. nodes[0] is
// the sentinel: its next is the most recently used entry, its prev the least
// recently used. Free nodes are chained through next, starting at free.
type node[K comparable, V any] struct {
	entry      Entry[K, V]
	prev, next int32
}

// Index is a size-bounded LRU index from K to V. The zero value is not
// usable; call New. See the package doc for accounting and locking.
type Index[K comparable, V any] struct {
	max      int64
	used     int64 // sum of the sizes of the entries
	reserved int64 // sum of the outstanding reservations
	items    map[K]int32
	nodes    []node[K, V] // nodes[0] is the sentinel
	free     int32        // first free node, 0 if none
}

// New returns an empty index that holds at most maxBytes (entries plus
// reservations). capacityHint, like the hint of make(map), is the number of
// entries to allocate room for up front; 0 is fine.
func New[K comparable, V any](maxBytes int64, capacityHint int) *Index[K, V] {
	if maxBytes < 0 {
		panic("lru: negative maximum size")
	}
	x := &Index[K, V]{
		max:   maxBytes,
		items: make(map[K]int32, capacityHint),
		nodes: make([]node[K, V], 1, capacityHint+1),
	}
	return x
}

// Max returns the capacity in bytes given to New.
func (x *Index[K, V]) Max() int64 { return x.max }

// Used returns the total size of the entries.
func (x *Index[K, V]) Used() int64 { return x.used }

// Reserved returns the total of the outstanding reservations.
func (x *Index[K, V]) Reserved() int64 { return x.reserved }

// Len returns the number of entries.
func (x *Index[K, V]) Len() int { return len(x.items) }

// Reserve sets aside n bytes for an upload in progress, evicting least
// recently used entries until Used+Reserved+n <= Max. It returns the evicted
// entries, oldest first, so that the caller can delete their data; they are
// no longer in the index. If even evicting every entry cannot make room
// (n is larger than Max, or concurrent uploads have reserved too much), it
// evicts nothing and returns ResourceExhausted. Every successful Reserve must
// be paired with a Release of the same n.
func (x *Index[K, V]) Reserve(n int64) ([]Entry[K, V], error) {
	if n < 0 {
		panic("lru: negative reservation")
	}
	if n > x.max {
		return nil, status.Errorf(codes.ResourceExhausted, "%d bytes do not fit in a store of %d bytes", n, x.max)
	}
	if n > x.max-x.reserved {
		return nil, status.Errorf(codes.ResourceExhausted, "%d bytes do not fit: %d of %d bytes are reserved by uploads in progress", n, x.reserved, x.max)
	}
	victims := x.evictUntil(x.max - x.reserved - n)
	x.reserved += n
	return victims, nil
}

// Release returns n bytes of an earlier Reserve. It does not evict.
func (x *Index[K, V]) Release(n int64) {
	if n < 0 || n > x.reserved {
		panic("lru: release of more than was reserved")
	}
	x.reserved -= n
}

// Insert adds k as the most recently used entry. If k is already present,
// Insert is idempotent for the space accounting: the value and size are
// replaced (counted once, at the new size), the entry becomes the most
// recently used, and the previous value is returned with replaced set.
//
// Insert never evicts. The space should have been reserved (Release and
// Insert in the same critical section); otherwise Used+Reserved may exceed
// Max until the caller calls Trim.
func (x *Index[K, V]) Insert(k K, v V, size int64) (old V, replaced bool) {
	if size < 0 {
		panic("lru: negative entry size")
	}
	if i, ok := x.items[k]; ok {
		n := &x.nodes[i]
		old = n.entry.Value
		x.used += size - n.entry.Size
		n.entry.Value = v
		n.entry.Size = size
		x.moveToFront(i)
		return old, true
	}
	i := x.free
	if i != 0 {
		x.free = x.nodes[i].next
	} else {
		x.nodes = append(x.nodes, node[K, V]{})
		i = int32(len(x.nodes) - 1)
		if int(i) != len(x.nodes)-1 {
			panic("lru: more than 2^31-1 entries")
		}
	}
	x.nodes[i].entry = Entry[K, V]{Key: k, Value: v, Size: size}
	x.items[k] = i
	x.used += size
	x.linkFront(i)
	return old, false
}

// Get returns the value of k and makes it the most recently used entry.
func (x *Index[K, V]) Get(k K) (V, bool) {
	i, ok := x.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	x.moveToFront(i)
	return x.nodes[i].entry.Value, true
}

// Peek returns the value of k without changing its recency.
func (x *Index[K, V]) Peek(k K) (V, bool) {
	i, ok := x.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	return x.nodes[i].entry.Value, true
}

// Touch makes k the most recently used entry and reports whether it is
// present.
func (x *Index[K, V]) Touch(k K) bool {
	i, ok := x.items[k]
	if ok {
		x.moveToFront(i)
	}
	return ok
}

// Remove deletes k and returns its value. It does not touch reservations.
func (x *Index[K, V]) Remove(k K) (V, bool) {
	i, ok := x.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	e := x.removeNode(i)
	return e.Value, true
}

// Trim evicts least recently used entries until Used+Reserved <= Max and
// returns them, oldest first. Use it after Inserts that were not reserved,
// such as rebuilding the index at startup.
func (x *Index[K, V]) Trim() []Entry[K, V] {
	return x.evictUntil(x.max - x.reserved)
}

// All yields the entries from the least to the most recently used. The index
// must not be modified during the iteration.
func (x *Index[K, V]) All() iter.Seq[Entry[K, V]] {
	return func(yield func(Entry[K, V]) bool) {
		for i := x.nodes[0].prev; i != 0; i = x.nodes[i].prev {
			if !yield(x.nodes[i].entry) {
				return
			}
		}
	}
}

// evictUntil removes least recently used entries until used <= limit.
func (x *Index[K, V]) evictUntil(limit int64) []Entry[K, V] {
	var victims []Entry[K, V]
	for x.used > limit {
		victims = append(victims, x.removeNode(x.nodes[0].prev))
	}
	return victims
}

func (x *Index[K, V]) removeNode(i int32) Entry[K, V] {
	n := &x.nodes[i]
	e := n.entry
	x.unlink(i)
	delete(x.items, e.Key)
	x.used -= e.Size
	*n = node[K, V]{next: x.free} // drop references held by K and V
	x.free = i
	return e
}

func (x *Index[K, V]) moveToFront(i int32) {
	if x.nodes[0].next == i {
		return
	}
	x.unlink(i)
	x.linkFront(i)
}

func (x *Index[K, V]) unlink(i int32) {
	n := &x.nodes[i]
	x.nodes[n.prev].next = n.next
	x.nodes[n.next].prev = n.prev
}

func (x *Index[K, V]) linkFront(i int32) {
	head := x.nodes[0].next
	x.nodes[i].prev = 0
	x.nodes[i].next = head
	x.nodes[head].prev = i
	x.nodes[0].next = i
}
