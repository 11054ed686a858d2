package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/pprof/profile"
)

// A sample belongs to the first area with a frame on its stack, whatever
// the frame's depth; shares are of the samples' CPU time (not their
// count), largest first,
// and what no area names is "other", last. The profile goes through its
// encoding, as paygate's /debug/pprof/profile sends it.
func TestByAreaReadsAProfileByTheFirstAreaOnEachStack(t *testing.T) {
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType: &profile.ValueType{Type: "cpu", Unit: "nanoseconds"},
		Period:     10_000_000,
	}
	fn := frames(p)
	serve := fn("net/http.(*conn).serve")
	emit := fn("paygate/webhooks.(*Service).EmitTx")
	create := fn("paygate/payments.(*Service).createBatch.func1")
	send := fn("paygate/webhooks.(*Service).send")
	record := fn("paygate/webhooks.(*Service).finishAttemptTx")
	readLoop := fn("net/http.(*persistConn).readLoop")
	syscall := fn("internal/runtime/syscall/linux.Syscall6")
	mark := fn("runtime.gcBgMarkWorker")
	lone := fn("runtime.memmove")
	add := func(ms int64, stack ...*profile.Location) { // leaf first, as pprof stores it
		// One sample each: shares by count would differ from those by CPU time.
		s := &profile.Sample{Value: []int64{1, ms * 1_000_000}}
		s.Location = stack
		p.Sample = append(p.Sample, s)
	}
	add(400, syscall, send)         // webhook requests
	add(100, readLoop)              // webhook requests: the client's own goroutine
	add(200, syscall, emit, create) // creation batch: its events are written in it
	add(100, record)                // a first attempt's record: webhooks
	add(100, syscall, serve)        // the API server
	add(50, mark)                   // the collector
	add(50, lone)                   // no area: other
	parsed := encoded(t, p)

	got := byArea(parsed, "cpu")
	want := []Area{
		{"webhook requests (signing, net/http client)", 0.5},
		{"payment creation batches (with their events)", 0.2},
		{"webhook reads and records", 0.1},
		{"API server (net/http, echo, middleware, handlers)", 0.1},
		{"garbage collector", 0.05},
		{"other", 0.05},
	}
	sameShares(t, "areas", got, want)
}

// A mutex profile is read by the time waited, not by the number of waits:
// its total, its areas (as a CPU profile's), and the code that held each
// lock, the first frame outside the runtime and sync from the leaf (an
// unlock's stack, its type arguments cut), largest first. It goes through
// its encoding, as paygate's /debug/pprof/mutex sends it.
func TestReadLocksByTheTimeWaited(t *testing.T) {
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "contentions", Unit: "count"}, {Type: "delay", Unit: "nanoseconds"}},
		PeriodType: &profile.ValueType{Type: "contentions", Unit: "count"},
		Period:     100,
	}
	fn := frames(p)
	unlock := fn("sync.(*Mutex).Unlock")
	internalUnlock := fn("internal/sync.(*Mutex).Unlock")
	runtimeUnlock := fn("runtime.unlock")
	batcher := fn("paygate/db.(*Batcher[go.shape.struct { a []int },go.shape.bool]).Do")
	create := fn("paygate/payments.(*Service).createBatch")
	first := fn("paygate/webhooks.(*firstAttempts).dispatch")
	serve := fn("net/http.(*conn).serve")
	add := func(waits, ms int64, stack ...*profile.Location) { // leaf first
		p.Sample = append(p.Sample, &profile.Sample{Value: []int64{waits, ms * 1_000_000}, Location: stack})
	}
	add(10, 6, unlock, batcher, create, serve) // many short waits
	add(1, 3, internalUnlock, unlock, first)   // one long one, as Go's own sync stacks it
	add(100, 1, runtimeUnlock)                 // the runtime's own lock: no holder of ours
	parsed := encoded(t, p)

	got := readLocks(parsed)
	if got.WaitedMs != 10 || got.Contentions != 111 {
		t.Errorf("waited %v ms in %d waits, want 10 ms in 111", got.WaitedMs, got.Contentions)
	}
	sameShares(t, "areas", got.Areas, []Area{
		{"payment creation batches (with their events)", 0.6},
		{"webhook reads and records", 0.3},
		{"other", 0.1},
	})
	sameShares(t, "holders", got.Holders, []Area{
		{"paygate/db.(*Batcher[…]).Do", 0.6},
		{"paygate/webhooks.(*firstAttempts).dispatch", 0.3},
		{"runtime", 0.1},
	})
}

// The machine's idle time is idle plus iowait; its total, every column up
// to steal (guest time is counted in user already).
func TestParseProcStat(t *testing.T) {
	idle, total := parseProcStat(strings.NewReader(
		"cpu  100 5 50 800 20 3 2 10 7 1\ncpu0 50 2 25 400 10 1 1 5 3 0\n"))
	if idle != 820 || total != 990 {
		t.Errorf("got idle %v of %v, want 820 of 990", idle, total)
	}
	if idle, total := parseProcStat(strings.NewReader("intr 1 2 3\n")); idle != 0 || total != 0 {
		t.Errorf("a file without the cpu line: got %v of %v, want 0 of 0", idle, total)
	}
}

// sameShares checks got against want, name for name and share for share
// (to a billionth), in order.
func sameShares(t *testing.T, what string, got, want []Area) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
	for i := range want {
		if got[i].Name != want[i].Name || got[i].Share < want[i].Share-1e-9 || got[i].Share > want[i].Share+1e-9 {
			t.Errorf("%s %d: got %v, want %v", what, i, got[i], want[i])
		}
	}
}

// frames returns a function that adds a function of the given name to p,
// with a location of its own, and returns the location.
func frames(p *profile.Profile) func(name string) *profile.Location {
	return func(name string) *profile.Location {
		id := uint64(len(p.Function) + 1)
		f := &profile.Function{ID: id, Name: name}
		l := &profile.Location{ID: id, Line: []profile.Line{{Function: f}}}
		p.Function, p.Location = append(p.Function, f), append(p.Location, l)
		return l
	}
}

// encoded is p as paygate's /debug/pprof sends it: written, then parsed.
func encoded(t *testing.T, p *profile.Profile) *profile.Profile {
	t.Helper()
	var enc bytes.Buffer
	if err := p.Write(&enc); err != nil {
		t.Fatal(err)
	}
	parsed, err := profile.Parse(&enc)
	if err != nil {
		t.Fatal(err)
	}
	return parsed
}
