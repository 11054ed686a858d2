package main

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what a run found; printed as text and written as JSON with the
// same fields.
type Report struct {
	Ceilings   []Ceiling         `json:"ceilings"`
	Phases     []Phase           `json:"phases"`
	Flows      []Flow            `json:"end_to_end"`
	Cost       *Cost             `json:"cost_account,omitempty"`
	RefundCost *Cost             `json:"refund_cost_account,omitempty"`
	Profile    *Profiled         `json:"profile,omitempty"`
	Receiver   ReceiverStats     `json:"webhook_receiver"`
	Resources  Resources         `json:"resources"`
	GatewayLog GatewayLog        `json:"gateway_log"`
	Startup    float64           `json:"startup_s,omitempty"` // paygate process start to /health 200
	Machine    Machine           `json:"machine"`
	Settings   []string          `json:"postgres_settings"`
	Flags      map[string]string `json:"flags"`

	// SpareBatches is paygate_spare_batches_total at the run's end, every
	// kind: creation batches started because requests waited behind a
	// stalled one (-1: /metrics could not be read).
	SpareBatches float64 `json:"spare_batches"`
	// Warnings are what makes a figure of the run doubtful.
	Warnings []string `json:"warnings,omitempty"`
}

// Phase is a closed or open loop of requests. Requests counts those
// answered, failed ones too (and those an open loop dropped); RPS and the
// latencies are of the successful ones only, the failures counted in Errors.
type Phase struct {
	Name           string         `json:"name"`
	Requests       int            `json:"requests"`
	Errors         int            `json:"errors"`
	ErrorsByStatus map[string]int `json:"errors_by_status,omitempty"`
	Seconds        float64        `json:"seconds"`
	RPS            float64        `json:"req_per_s"`
	Ratio          float64        `json:"ratio_of_ceiling,omitempty"`
	Ceiling        string         `json:"ceiling,omitempty"`
	Latency        Latency        `json:"latency"`
	CPU            CPUPer         `json:"cpu_ms_per_request"`
	// The payments phases' requests with and without an Idempotency-Key.
	Keyed   *Latency `json:"latency_with_key,omitempty"`
	Unkeyed *Latency `json:"latency_without_key,omitempty"`
	Drain   *Drain   `json:"drain,omitempty"`
	Note    string   `json:"note,omitempty"`

	samples []time.Duration // each request's latency (runPhase)
	of      []int           // and which request it was
}

// latencyOf is the latency of the phase's requests that match.
func (p *Phase) latencyOf(match func(i int) bool) *Latency {
	var d []time.Duration
	for k, i := range p.of {
		if match(i) {
			d = append(d, p.samples[k])
		}
	}
	l := percentiles(d)
	return &l
}

func (p *Phase) ratio(c Ceiling) {
	if c.TPS > 0 {
		p.Ratio, p.Ceiling = p.RPS/c.TPS, c.Name
	}
}

// Drain is the wait after a payments phase until every payment.success of
// it has arrived.
type Drain struct {
	Payments int     `json:"payments"`
	Missing  int     `json:"missing"`
	Seconds  float64 `json:"seconds_after_phase"`
	Rate     float64 `json:"delivered_per_s"` // over the phase plus the drain
}

// Flow is an end-to-end figure: from the first request to the last webhook.
type Flow struct {
	Name           string         `json:"name"`
	Items          int            `json:"items"`
	Offered        float64        `json:"offered_per_s,omitempty"`
	Completed      int            `json:"completed"` // with their webhook received
	Missing        int            `json:"missing"`   // created, webhook not received within -wait
	Errors         int            `json:"errors"`
	ErrorsByStatus map[string]int `json:"errors_by_status,omitempty"`
	Seconds        float64        `json:"seconds"`
	Rate           float64        `json:"completed_per_s"`
	Ratio          float64        `json:"ratio_of_ceiling,omitempty"`
	Ceiling        string         `json:"ceiling,omitempty"`
	Post           Latency        `json:"post_latency"`
	Lag            Latency        `json:"webhook_lag_minus_delay"`
	CPU            CPUPer         `json:"cpu_ms_per_item"`
}

func (f *Flow) ratio(c Ceiling) {
	if c.TPS > 0 {
		f.Ratio, f.Ceiling = f.Rate/c.TPS, c.Name
	}
}

// CPUPer is the CPU time, in ms per request or item, that paygate,
// PostgreSQL and the bench itself (its clients and webhook receiver, and
// the samplers that poll PostgreSQL while they run, on the same cores)
// spent over a phase.
type CPUPer struct {
	Paygate float64 `json:"paygate"`
	DB      float64 `json:"db"`
	Bench   float64 `json:"bench"`
	// Idle is not in ms: it is the share (0–1) of the machine's CPU time
	// that no process used meanwhile, whatever the three above did (nil:
	// not read).
	Idle *float64 `json:"machine_idle_share,omitempty"`
}

// Resources are over the whole paygate run (all phases).
type Resources struct {
	PaygatePeakRSS  int64   `json:"paygate_peak_rss_bytes"`
	PaygateCPU      float64 `json:"paygate_cpu_s"`
	PostgresPeakPSS int64   `json:"postgres_peak_pss_bytes"`
	PostgresCPU     float64 `json:"postgres_cpu_s"`
	BenchCPU        float64 `json:"bench_cpu_s"` // its clients, receiver and samplers
}

// GatewayLog is what the started paygate wrote (at LOG_LEVEL=warn, so
// ideally nothing).
type GatewayLog struct {
	Lines int      `json:"lines"`
	First []string `json:"first,omitempty"`
}

type Machine struct {
	CPUs  int    `json:"cpus"`
	Model string `json:"cpu_model,omitempty"`
	OS    string `json:"goos"`
	Arch  string `json:"goarch"`
	Go    string `json:"go"`
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// flagValues is every flag as set for this run, the API secret left out.
func flagValues() map[string]string {
	out := map[string]string{}
	flag.VisitAll(func(f *flag.Flag) {
		if f.Name != "secret" {
			out[f.Name] = f.Value.String()
		}
	})
	return out
}

func (r *Report) add(p Phase) { r.Phases = append(r.Phases, p) }

func (r *Report) write(w io.Writer, jsonPath string, cost bool) error {
	r.text(w, cost)
	if jsonPath == "" {
		return nil
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(jsonPath, append(b, '\n'), 0o644)
}

func (r *Report) text(w io.Writer, cost bool) {
	fmt.Fprintf(w, "\npaygate bench — %d CPUs (%s), %s\n", r.Machine.CPUs, r.Machine.Model, r.Machine.Go)
	fmt.Fprintf(w, "PostgreSQL: %s\n", strings.Join(r.Settings, " "))

	fmt.Fprintln(w, "\nceiling: the database alone (paygate stopped) committing paygate's hot-path transactions")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "transaction\tsent\tclients\tconnections\ttx\terrors\ttx/s\tp50\tp99\tDB CPU/tx\tcommits/tx\tWAL/tx\t")
	for _, c := range r.Ceilings {
		best := ""
		if c.Best {
			best = " *"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%.0f%s\t%s\t%s\t%.2fms\t%.2f\t%.0fB\t\n", c.Name, cmp.Or(c.Way, "-"), c.Conc, c.Conns, c.Tx, c.Errors,
			c.TPS, best, ms(c.Latency.P50), ms(c.Latency.P99), c.DBCPUms, c.Commits, c.WALBytes)
	}
	tw.Flush()
	fmt.Fprintln(w, "  * the ceiling: the best tx/s of each transaction, whichever way it was sent, which every ratio below divides by")

	fmt.Fprintln(w, "\nrequests (closed loop)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\trequests\terrors\treq/s\tof ceiling\tp50\tp90\tp99\tmax\tpaygate CPU/req\tDB CPU/req\tbench CPU/req\tmachine idle\t")
	for _, p := range r.Phases {
		l := p.Latency
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%.2fms\t%.2fms\t%.2fms\t%s\t\n", p.Name, p.Requests, p.Errors, p.RPS, pct(p.Ratio),
			ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max), p.CPU.Paygate, p.CPU.DB, p.CPU.Bench, share(p.CPU.Idle))
	}
	tw.Flush()
	for _, p := range r.Phases {
		if p.Errors > 0 {
			fmt.Fprintf(w, "  %s errors: %s\n", p.Name, counts(p.ErrorsByStatus))
		}
		if d := p.Drain; d != nil {
			fmt.Fprintf(w, "  %s: last payment.success %.1f s after the phase (missing %d): %.0f payments/s delivered over phase + drain (%s of ceiling)\n",
				p.Name, d.Seconds, d.Missing, d.Rate, pct(d.Rate/max(1, r.ceilingTPS(p.Ceiling))))
		}
		if k, u := p.Keyed, p.Unkeyed; k != nil && u != nil {
			fmt.Fprintf(w, "  %s: with an Idempotency-Key p50 %s, p90 %s, p99 %s; without p50 %s, p90 %s, p99 %s\n", p.Name,
				ms(k.P50), ms(k.P90), ms(k.P99), ms(u.P50), ms(u.P90), ms(u.P99))
		}
		if p.Note != "" {
			fmt.Fprintf(w, "  %s: %s\n", p.Name, p.Note)
		}
	}

	fmt.Fprintln(w, "\nend to end (first request → last webhook received; lag = 201 → webhook, minus TEST_PROCESSING_DELAY)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "flow\titems\tdone\tmissing\terrors\tseconds\tdone/s\tof ceiling\tPOST p99\tlag p50\tlag p90\tlag p99\tlag max\tpaygate CPU/item\tDB CPU/item\tbench CPU/item\tmachine idle\t")
	for _, f := range r.Flows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.1f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%.2fms\t%.2fms\t%.2fms\t%s\t\n", f.Name, f.Items, f.Completed, f.Missing,
			f.Errors, f.Seconds, f.Rate, pct(f.Ratio), ms(f.Post.P99), ms(f.Lag.P50), ms(f.Lag.P90), ms(f.Lag.P99), ms(f.Lag.Max),
			f.CPU.Paygate, f.CPU.DB, f.CPU.Bench, share(f.CPU.Idle))
	}
	tw.Flush()
	for _, f := range r.Flows {
		if f.Errors > 0 {
			fmt.Fprintf(w, "  %s errors: %s\n", f.Name, counts(f.ErrorsByStatus))
		}
	}
	unpaired := strconv.Itoa(r.Receiver.Unpaired)
	if r.Receiver.Unpaired < 0 {
		unpaired = "not counted (the run ended with work in flight)"
	}
	fmt.Fprintf(w, "webhooks received: %s; invalid signatures %d, unreadable bodies %d, duplicate deliveries (same webhook-id) %d, events delivered twice (same event and object, another webhook-id) %d, objects with an event missing (created without outcome, or outcome without created) %s\n",
		counts(r.Receiver.Events), r.Receiver.Invalid, r.Receiver.Unreadable, r.Receiver.Duplicates, r.Receiver.Twice, unpaired)

	res := r.Resources
	fmt.Fprintf(w, "\nresources over the paygate run: paygate peak RSS %s, CPU %.1f s; PostgreSQL peak PSS %s, CPU %.1f s; bench (clients, receiver, samplers) CPU %.1f s\n",
		mib(res.PaygatePeakRSS), res.PaygateCPU, mib(res.PostgresPeakPSS), res.PostgresCPU, res.BenchCPU)
	for _, warning := range r.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", warning)
	}
	if r.Startup > 0 {
		fmt.Fprintf(w, "paygate start-up (process start to /health 200, migrations done): %.2f s\n", r.Startup)
	}
	fmt.Fprintf(w, "spare creation batches (requests that waited 250 ms behind a stalled batch): %.0f\n", r.SpareBatches)
	fmt.Fprintf(w, "paygate log at LOG_LEVEL=warn: %d lines\n", r.GatewayLog.Lines)
	for _, l := range r.GatewayLog.First {
		fmt.Fprintf(w, "  %s\n", truncate(l, 200))
	}
	if pr := r.Profile; pr != nil {
		profileText(w, pr)
	}
	for _, c := range []*Cost{r.Cost, r.RefundCost} {
		if c != nil {
			r.costText(w, c, cost)
		}
	}
	var names []string
	for k := range r.Flags {
		names = append(names, k)
	}
	sort.Strings(names)
	var fl []string
	for _, k := range names {
		fl = append(fl, "-"+k+"="+r.Flags[k])
	}
	fmt.Fprintf(w, "\nflags: %s\n", strings.Join(fl, " "))
}

func (r *Report) costText(w io.Writer, c *Cost, full bool) {
	fmt.Fprintf(w, "\ncost account, per %s (%d, creation → last webhook, all jobs done):\n", c.Of, c.Items)
	fmt.Fprintf(w, "  statements %.2f sent (%.2f more run inside them: foreign-key checks, their time in their callers'), commits %.2f, rollbacks %.2f, statement time %.2f ms, DB CPU %.2f ms, paygate CPU %.2f ms, WAL %.0f B (by position) in %.2f flushes, %.2f full-page images\n",
		c.Statements, c.Nested, c.Commits, c.Rollbacks, c.ExecMs, c.DBCPUms, c.GatewayCPU, c.WALBytes, c.WALSyncs, c.WALFPIs)
	if pj := r.best("payment + job"); pj.DBCPUms > 0 && c == r.Cost {
		fmt.Fprintf(w, "  against the payment + job ceiling: %.1f× its DB CPU and %.1f× its commits per transaction\n",
			c.DBCPUms/pj.DBCPUms, c.Commits/max(0.01, pj.Commits))
	}
	waitsText(w, c.Waits)
	byArea := map[string][2]float64{}
	for _, s := range c.ByStmt {
		a := byArea[s.Area]
		byArea[s.Area] = [2]float64{a[0] + s.Calls, a[1] + s.ExecMs}
	}
	var areas []string
	for a := range byArea {
		areas = append(areas, a)
	}
	sort.Slice(areas, func(i, j int) bool { return byArea[areas[i]][0] > byArea[areas[j]][0] })
	tables := c.WAL[:min(8, len(c.WAL))]
	if len(tables) > 0 {
		fmt.Fprint(w, "  WAL by table, B (of it indexes; full-page images):")
		for _, t := range tables {
			fmt.Fprintf(w, " %s %.0f (%.0f; %.2f);", t.Table, t.Bytes, t.IndexBytes, t.FPIs)
		}
		fmt.Fprintln(w)
	}
	if full {
		for _, t := range tables {
			fmt.Fprintf(w, "    %s:", t.Table)
			for _, k := range t.topKinds(5) {
				fmt.Fprintf(w, " %s %.0f;", k, t.Kinds[k])
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprint(w, "  by area (statements, ms):")
	for _, a := range areas {
		fmt.Fprintf(w, " %s %.2f/%.2f;", a, byArea[a][0], byArea[a][1])
	}
	fmt.Fprintln(w)
	if !full {
		fmt.Fprintln(w, "  (-cost prints every statement)")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  calls/item\tms/item\trows/item\tarea\tstatement")
	for _, s := range c.ByStmt {
		if s.Calls < 0.005 {
			continue
		}
		fmt.Fprintf(tw, "  %.2f\t%.3f\t%.2f\t%s\t%s\n", s.Calls, s.ExecMs, s.Rows, s.Area, truncate(s.Query, 150))
	}
	tw.Flush()
}

func (r *Report) ceilingTPS(name string) float64 {
	return r.best(name).TPS
}

// best is the ceiling of the named transaction: its best measurement.
func (r *Report) best(name string) Ceiling {
	for _, c := range r.Ceilings {
		if c.Name == name && c.Best {
			return c
		}
	}
	return Ceiling{}
}

// share prints a share that may be zero, "-" when it is unknown.
func share(r *float64) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100**r)
}

func pct(r float64) string {
	if r == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*r)
}

func ms(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0fms", v)
	}
	return fmt.Sprintf("%.1fms", v)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func counts(m map[string]int) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// waitsText prints the largest of paygate's database sessions' waits.
func waitsText(w io.Writer, waits []Wait) {
	fmt.Fprint(w, "  paygate's sessions meanwhile (pg_stat_activity every 50 ms):")
	for i, wt := range waits {
		if i == 8 {
			break
		}
		fmt.Fprintf(w, " %s %.0f%%;", wt.Event, 100*wt.Share)
	}
	fmt.Fprintln(w)
}

// sharesText writes each area's name and share, as " name 12%;".
func sharesText(w io.Writer, areas []Area) {
	for _, a := range areas {
		fmt.Fprintf(w, " %s %.0f%%;", a.Name, 100*a.Share)
	}
}

// profileText prints what -profile found.
func profileText(w io.Writer, pr *Profiled) {
	fmt.Fprintf(w, "\nprofiles of %s (-profile):\n", pr.Phase)
	for _, f := range []struct{ of, path string }{{"paygate's CPU", pr.PaygateFile},
		{"paygate's locks", pr.MutexFile}, {"the bench's CPU", pr.BenchFile}} {
		if f.path != "" {
			fmt.Fprintf(w, "  %s: go tool pprof %s\n", f.of, f.path)
		}
	}
	if pr.Err != "" {
		fmt.Fprintf(w, "  WARNING: %s\n", pr.Err)
	}
	if pr.PaygateFile != "" {
		fmt.Fprintf(w, "  paygate's CPU by area, over %.1f s:", pr.Seconds)
		if len(pr.PaygateAreas) == 0 {
			fmt.Fprint(w, " no samples")
		}
		sharesText(w, pr.PaygateAreas)
		fmt.Fprintln(w)
	}
	if l := pr.Locks; l != nil && l.Contentions == 0 {
		fmt.Fprintln(w, "  paygate's lock profile: no contended lock sampled (paygate samples one in 10 where ADMIN_TOKEN mounts the profiler)")
	} else if l != nil {
		fmt.Fprintf(w, "  paygate's goroutines waited %.1f ms for each other's locks, in %d waits (the mutex profile's estimate, one in 10 sampled); by the code holding them,", l.WaitedMs, l.Contentions)
		for _, part := range []struct {
			of    string
			areas []Area
		}{{"by area", l.Areas}, {"by function", l.Holders}} {
			if len(part.areas) > 0 {
				fmt.Fprintf(w, " %s:", part.of)
			}
			sharesText(w, part.areas)
		}
		fmt.Fprintln(w)
	}
	waitsText(w, pr.Waits)
}
