package scheduler

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The matching rule: a worker can run an action iff it offers every
// (name, value) pair of the action's platform, exactly. A worker may offer
// several values for one name (say ISA=x86-64 and ISA=x86-64-v3); an action
// with an empty platform runs on any worker. Nothing is a wildcard and
// nothing is compared as a number or a prefix.

// propertySet is the set of properties a worker offers.
type propertySet map[Property]struct{}

func newPropertySet(props []Property) propertySet {
	ps := make(propertySet, len(props))
	for _, p := range props {
		ps[p] = struct{}{}
	}
	return ps
}

// satisfies reports whether a worker offering ps can run an action with
// this platform.
func (ps propertySet) satisfies(platform []Property) bool {
	for _, p := range platform {
		if _, ok := ps[p]; !ok {
			return false
		}
	}
	return true
}

// sorted returns the properties sorted by name, then value, without
// duplicates.
func (ps propertySet) sorted() []Property {
	out := make([]Property, 0, len(ps))
	for p := range ps {
		out = append(out, p)
	}
	slices.SortFunc(out, compareProperties)
	return out
}

func compareProperties(a, b Property) int {
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return strings.Compare(a.Value, b.Value)
}

// checkSorted returns InvalidArgument unless platform is sorted by name,
// then value, as REAPI requires. We reject rather than re-sort: equal
// platforms must hash equal on the client too (STYLE.md 3).
func checkSorted(platform []Property) error {
	for i := 1; i < len(platform); i++ {
		if compareProperties(platform[i-1], platform[i]) > 0 {
			return status.Errorf(codes.InvalidArgument,
				"platform property %s=%s comes after %s=%s: properties must be sorted by name, then value",
				platform[i].Name, platform[i].Value, platform[i-1].Name, platform[i-1].Value)
		}
	}
	return nil
}

// platformKey encodes a sorted platform injectively (length-prefixed), for
// map keys. Names and values may contain any character.
func platformKey(platform []Property) string {
	var b strings.Builder
	for _, p := range platform {
		b.WriteString(strconv.Itoa(len(p.Name)))
		b.WriteByte(':')
		b.WriteString(p.Name)
		b.WriteString(strconv.Itoa(len(p.Value)))
		b.WriteByte(':')
		b.WriteString(p.Value)
	}
	return b.String()
}

// FormatPlatform renders properties for people: "{OSFamily=linux, cpu=arm64}".
// It is not injective; use it in messages and on the status page only.
func FormatPlatform(platform []Property) string {
	return "{" + formatProperties(platform) + "}"
}

func formatProperties(props []Property) string {
	var b strings.Builder
	for i, p := range props {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.Name)
		b.WriteByte('=')
		b.WriteString(p.Value)
	}
	return b.String()
}

// goneWorkers remembers when workers offering one property set were last
// connected, so that "no worker can run this" stays UNAVAILABLE for
// PlatformGrace after the last one left (a restart, a network blip).
type goneWorkers struct {
	props propertySet
	seen  time.Time
}

// lastMatchingSeen returns the last time a worker that satisfies platform
// was connected, but no earlier than start-up. It only looks at workers
// that are gone; the caller knows no connected worker matches. Records
// older than PlatformGrace can no longer change an answer and are dropped.
// s.mu must be held.
func (s *Scheduler) lastMatchingSeen(platform []Property) time.Time {
	last := s.start
	for key, g := range s.gone {
		if s.now.Sub(g.seen) >= s.cfg.PlatformGrace {
			delete(s.gone, key)
			continue
		}
		if g.seen.After(last) && g.props.satisfies(platform) {
			last = g.seen
		}
	}
	return last
}

// noWorkerMessage explains why no connected worker can run platform: the
// properties that no worker offers at all, or, when each is offered by
// some worker, that none offers them together. s.mu must be held.
func (s *Scheduler) noWorkerMessage(platform []Property) string {
	if len(s.workers) == 0 {
		return "no worker is connected"
	}
	var missing []Property
	for _, p := range platform {
		offered := false
		for _, w := range s.workers {
			if _, ok := w.props[p]; ok {
				offered = true
				break
			}
		}
		if !offered {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return "no worker offers " + formatProperties(missing)
	}
	return "no worker offers all of " + FormatPlatform(platform)
}
