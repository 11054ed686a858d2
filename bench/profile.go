package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/pprof/profile"
)

// Profiled is what -profile records over the payments phase at -c clients,
// where the target is measured: paygate's CPU profile (taken through its
// /debug/pprof/profile, which the run's ADMIN_TOKEN opens) read by area,
// its lock profile over the same seconds (/debug/pprof/mutex: the waits on
// its goroutines' locks), the bench's own CPU profile, and the database
// sessions' waits. The files are for `go tool pprof`; the areas, locks and
// waits are in the report. The profiler samples paygate 100 times a second
// over that phase, and one contended lock in 10 over the whole run (the
// run's ADMIN_TOKEN sets that), at a small cost to the figures (not
// measured apart).
type Profiled struct {
	Phase        string  `json:"phase"`
	Seconds      float64 `json:"seconds"`                      // paygate's profile's length, as it says (0: none)
	PaygateFile  string  `json:"paygate_file,omitempty"`       // paygate's CPU profile (empty: not taken)
	MutexFile    string  `json:"paygate_mutex_file,omitempty"` // paygate's lock profile (empty: not taken)
	BenchFile    string  `json:"bench_file,omitempty"`         // the bench's own (clients, receiver, samplers)
	PaygateAreas []Area  `json:"paygate_areas"`                // paygate's CPU by area, as shares of its samples
	Locks        *Locks  `json:"paygate_locks,omitempty"`      // read from its lock profile
	Waits        []Wait  `json:"session_waits"`                // paygate's database sessions meanwhile
	Err          string  `json:"error,omitempty"`
}

// Locks reads paygate's mutex profile over the phase: how long its
// goroutines waited for locks others held (the profile's estimate, scaled
// from its samples), in how many waits, and by the code that held the lock
// (a sample's stack is its unlock's, the holder's, not the waiter's): by
// area, and by the first frame outside the runtime and sync.
type Locks struct {
	WaitedMs    float64 `json:"waited_ms"`
	Contentions int64   `json:"contentions"`
	Areas       []Area  `json:"areas"` // shares of the time waited
	Holders     []Area  `json:"holders"`
}

// Area is a share of a profile's samples: of their CPU time, or of a
// mutex profile's time waited.
type Area struct {
	Name  string  `json:"name"`
	Share float64 `json:"share"`
}

// areas name where paygate's CPU goes (and the code holding the locks it
// waits for), in the order a sample is matched:
// a sample belongs to the first area one of whose frames (a function name
// prefix) is on its stack, else to "other". Creation batches come before
// the webhooks' areas because their events are written in their
// transaction (webhooks.EmitTx), and a first attempt's record after its
// HTTP client, which is its own goroutine's.
var areas = []struct {
	name   string
	frames []string
}{
	{"garbage collector", []string{"runtime.gcBgMarkWorker", "runtime.gcAssistAlloc", "runtime.bgsweep", "runtime.bgscavenge"}},
	{"webhook requests (signing, net/http client)", []string{"paygate/webhooks.(*Service).send", "net/http.(*persistConn)."}},
	{"payment creation batches (with their events)", []string{"paygate/payments.(*Service).createBatch"}},
	{"decisions (with their events)", []string{"paygate/payments.(*Worker)", "paygate/payments.(*firstDecisions)"}},
	{"webhook reads and records", []string{"paygate/webhooks."}},
	{"River (job queue)", []string{"github.com/riverqueue/"}},
	{"API server (net/http, echo, middleware, handlers)", []string{"net/http.(*conn).serve"}},
	{"Go scheduler", []string{"runtime.schedule", "runtime.findRunnable", "runtime.mcall", "runtime.park_m"}},
}

// byArea reads a profile by area: each area's share of the samples' value
// of the given type (a CPU profile's "cpu", a mutex profile's "delay"),
// largest first, "other" last.
func byArea(p *profile.Profile, valueType string) []Area {
	vi := valueIndex(p, valueType)
	sums := make([]int64, len(areas)+1)
	var total int64
	for _, s := range p.Sample {
		v := s.Value[vi]
		total += v
		sums[areaOf(s)] += v
	}
	var out []Area
	for i, a := range areas {
		if sums[i] > 0 {
			out = append(out, Area{a.name, float64(sums[i]) / float64(total)})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Share > out[j].Share })
	if sums[len(areas)] > 0 {
		out = append(out, Area{"other", float64(sums[len(areas)]) / float64(total)})
	}
	return out
}

// areaOf is the index in areas of the sample's area, len(areas) for other.
func areaOf(s *profile.Sample) int {
	var stack []string
	for _, loc := range s.Location {
		for _, line := range loc.Line {
			if line.Function != nil {
				stack = append(stack, line.Function.Name)
			}
		}
	}
	for i, a := range areas {
		for _, f := range a.frames {
			if slices.ContainsFunc(stack, func(name string) bool { return strings.HasPrefix(name, f) }) {
				return i
			}
		}
	}
	return len(areas)
}

// valueIndex is the index of the profile's values of the given type (its
// last if none has it).
func valueIndex(p *profile.Profile, valueType string) int {
	vi := len(p.SampleType) - 1
	for i, t := range p.SampleType {
		if t.Type == valueType {
			vi = i
		}
	}
	return vi
}

// readLocks sums a mutex profile (values "contentions" and "delay", in
// nanoseconds): the time waited, the waits, by area, and the five code
// sites that held the locks waited for longest.
func readLocks(p *profile.Profile) *Locks {
	ci, di := valueIndex(p, "contentions"), valueIndex(p, "delay")
	l := &Locks{Areas: byArea(p, "delay")}
	holders := map[string]int64{}
	var total int64
	for _, s := range p.Sample {
		l.Contentions += s.Value[ci]
		total += s.Value[di]
		holders[holderOf(s)] += s.Value[di]
	}
	l.WaitedMs = float64(total) / 1e6
	for name, d := range holders {
		if d > 0 {
			l.Holders = append(l.Holders, Area{name, float64(d) / float64(total)})
		}
	}
	sort.Slice(l.Holders, func(i, j int) bool {
		a, b := l.Holders[i], l.Holders[j]
		return a.Share > b.Share || a.Share == b.Share && a.Name < b.Name
	})
	l.Holders = l.Holders[:min(5, len(l.Holders))]
	return l
}

// holderOf names the code that released a sampled lock: the first frame,
// from the leaf, outside the runtime and the sync packages.
func holderOf(s *profile.Sample) string {
	for _, loc := range s.Location {
		for _, line := range loc.Line {
			if line.Function == nil {
				continue
			}
			name := line.Function.Name
			if !strings.HasPrefix(name, "runtime.") && !strings.HasPrefix(name, "sync.") &&
				!strings.HasPrefix(name, "internal/") {
				return withoutTypeArgs(name)
			}
		}
	}
	return "runtime"
}

// withoutTypeArgs shortens a generic function's name: its type arguments
// (the compiler's shapes, a line long) become "[…]".
func withoutTypeArgs(name string) string {
	var out strings.Builder
	depth := 0
	for _, r := range name {
		switch {
		case r == '[':
			if depth == 0 {
				out.WriteString("[…]")
			}
			depth++
		case r == ']' && depth > 0:
			depth--
		case depth == 0:
			out.WriteRune(r)
		}
	}
	return out.String()
}

// profilePhase measures phase (b.measure), the one named name, with
// paygate's and the bench's CPU profiles, paygate's lock profile and the
// database's wait sampling going, and records them in dir and in the
// report. Only the phase is measured: waiting for paygate's profiles and
// reading them are not. It also returns when the phase ended, which its
// drain counts from.
func (b *bench) profilePhase(ctx context.Context, dir, name string, phase func() Phase) (p Phase, ended time.Time) {
	pr := &Profiled{Phase: name, PaygateFile: filepath.Join(dir, "paygate-cpu.pprof"),
		MutexFile: filepath.Join(dir, "paygate-mutex.pprof"), BenchFile: filepath.Join(dir, "bench-cpu.pprof")}
	b.rep.Profile = pr
	var errs []error
	defer func() {
		if err := errors.Join(errs...); err != nil {
			pr.Err = err.Error()
		}
	}()
	// A file left by an earlier run would be read as this one's.
	for _, f := range []string{pr.PaygateFile, pr.MutexFile, pr.BenchFile} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		errs = append(errs, err)
		return b.measure(ctx, phase), time.Now()
	}
	// paygate's profile leaves out the phase's first half second and what
	// follows its last whole second after that (its clients starting and
	// stopping); -profile needs -d ≥ 2s (main.go).
	secs := max(1, int((b.f.D - time.Second).Seconds()))
	got, gotLocks := make(chan error, 1), make(chan error, 1)
	go func() {
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
		}
		go func() { gotLocks <- b.gw.profile(ctx, "mutex", secs, pr.MutexFile) }()
		got <- b.gw.profile(ctx, "profile", secs, pr.PaygateFile)
	}()
	own, err := os.Create(pr.BenchFile)
	started := false
	if err == nil {
		err = pprof.StartCPUProfile(own)
		started = err == nil
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("the bench's own profile: %w", err))
	}
	waitCtx, stopWaits := context.WithCancel(ctx)
	waits := make(chan []Wait, 1)
	go func() { waits <- sampleWaits(waitCtx, b.pool) }()

	p = b.measure(ctx, phase)
	ended = time.Now()

	stopWaits()
	pr.Waits = <-waits
	if started {
		pprof.StopCPUProfile()
	}
	if own != nil {
		if err := own.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if !started {
		pr.BenchFile = ""
	}
	p.Note = "profiled (-profile): paygate's and the bench's CPU profilers, paygate's lock profile and a wait sampler ran; compare with -profile runs only"
	if err := <-gotLocks; err != nil {
		errs = append(errs, fmt.Errorf("paygate's lock profile: %w", err))
		pr.MutexFile = ""
	} else if locks, err := readProfile(pr.MutexFile); err != nil {
		errs = append(errs, err)
		pr.MutexFile = ""
	} else {
		pr.Locks = readLocks(locks)
	}
	if err := <-got; err != nil {
		errs = append(errs, fmt.Errorf("paygate's profile: %w", err))
		pr.PaygateFile = ""
		return p, ended
	}
	prof, err := readProfile(pr.PaygateFile)
	if err != nil {
		errs = append(errs, err)
		pr.PaygateFile = ""
		return p, ended
	}
	pr.Seconds = float64(prof.DurationNanos) / 1e9
	if pr.Seconds < float64(secs)-0.5 {
		errs = append(errs, fmt.Errorf("paygate's profile lasted %.1f s of the %d asked (HTTP_READ_TIMEOUT ends a longer one)", pr.Seconds, secs))
	}
	if past := 0.5 + pr.Seconds - p.Seconds; past > 0.1 {
		errs = append(errs, fmt.Errorf("paygate's profile ran %.1f s past the phase's end: its areas include work after it", past))
	}
	pr.PaygateAreas = byArea(prof, "cpu")
	return p, ended
}

func readProfile(path string) (*profile.Profile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return profile.Parse(f)
}

// profile saves paygate's profile of the given name ("profile" for its
// CPU, "mutex" for its locks) over the next secs seconds.
func (g *gateway) profile(ctx context.Context, name string, secs int, path string) error {
	// Bounded: a paygate that stops answering must not hold up the run.
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.url+"/debug/pprof/"+name+"?seconds="+strconv.Itoa(secs), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+g.adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return fmt.Errorf("paygate's /debug/pprof/%s answered %d: %s", name, resp.StatusCode, b)
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// machineCPU is the machine's idle and total CPU time so far, in clock
// ticks, from the first line of /proc/stat: idle counts idle and iowait
// (a core waiting for a disk is one no process uses).
func machineCPU() (idle, total float64) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	return parseProcStat(f)
}

func parseProcStat(r io.Reader) (idle, total float64) {
	sc := bufio.NewScanner(r)
	if !sc.Scan() {
		return 0, 0
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0
	}
	// user nice system idle iowait irq softirq steal; guest and guest_nice
	// are counted in user and nice already.
	for i, v := range fields[1:min(len(fields), 9)] {
		n, _ := strconv.ParseFloat(v, 64)
		total += n
		if i == 3 || i == 4 {
			idle += n
		}
	}
	return idle, total
}
