package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
)

// Report is what a run found; printed as text and, with -json, written as
// JSON with the same fields.
type Report struct {
	Phases     []Phase            `json:"phases"`
	Backlog    Backlog            `json:"backlog"`
	E2E        E2E                `json:"e2e"`
	Receiver   ReceiverStats      `json:"webhook_receiver"`
	Memory     Memory             `json:"memory"`
	Metrics    map[string]float64 `json:"metrics_at_end"`
	GatewayLog GatewayLog         `json:"gateway_log"`
	Startup    float64            `json:"startup_s,omitempty"` // paygate process start to /health 200
	Machine    Machine            `json:"machine"`
	Flags      map[string]string  `json:"flags"`
}

// Phase is one measured kind of request.
type Phase struct {
	Name           string         `json:"name"`
	Requests       int            `json:"requests"`
	Errors         int            `json:"errors"`
	ErrorsByStatus map[string]int `json:"errors_by_status,omitempty"`
	Seconds        float64        `json:"seconds"`
	RPS            float64        `json:"req_per_s"`
	Latency        Latency        `json:"latency"`
	Skipped        bool           `json:"skipped,omitempty"`
	Note           string         `json:"note,omitempty"`
}

// Backlog is the workers catching up after the payments phase: when the
// last of that phase's payment.success webhooks arrived.
type Backlog struct {
	Payments  int     `json:"payments"`
	Missing   int     `json:"missing"`
	LastAfter float64 `json:"last_webhook_after_phase_s"`
	Rate      float64 `json:"completed_per_s"` // payments decided and delivered, over the phase plus the backlog
}

// E2E is the time from a payment's 201 to its payment.success webhook.
type E2E struct {
	Payments int      `json:"payments"`
	Errors   int      `json:"errors"`                   // failed POSTs plus missing webhooks
	Missing  int      `json:"missing"`                  // no signed payment.success within -wait
	Delay    *float64 `json:"test_processing_delay_ms"` // nil with -url: the target's is unknown
	Latency  Latency  `json:"latency"`
	ids      []string
}

// Memory is the gateway process's RSS in bytes (0 when benching -url).
type Memory struct {
	StartRSS int64 `json:"start_rss_bytes"`
	PeakRSS  int64 `json:"peak_rss_bytes"`
	EndRSS   int64 `json:"end_rss_bytes"`
}

// GatewayLog is what the started paygate wrote (at LOG_LEVEL=warn, so
// ideally nothing).
type GatewayLog struct {
	Lines int      `json:"lines"`
	First []string `json:"first,omitempty"`
}

type Machine struct {
	CPUs   int    `json:"cpus"`
	Model  string `json:"cpu_model,omitempty"`
	OS     string `json:"goos"`
	Arch   string `json:"goarch"`
	Go     string `json:"go"`
	Target string `json:"target"` // "started by bench" or the -url
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

func (r *Report) write(w io.Writer, jsonPath string) error {
	r.Memory.PeakRSS = max(r.Memory.PeakRSS, r.Memory.StartRSS, r.Memory.EndRSS)
	r.text(w)
	if jsonPath == "" {
		return nil
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(jsonPath, append(b, '\n'), 0o644)
}

func (r *Report) text(w io.Writer) {
	fmt.Fprintf(w, "\npaygate bench (%s)\n\n", r.Machine.Target)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\trequests\terrors\treq/s\tp50\tp90\tp99\tmax\t")
	for _, p := range r.Phases {
		if p.Skipped {
			continue
		}
		l := p.Latency
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t\n", p.Name, p.Requests, p.Errors, p.RPS,
			ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max))
	}
	tw.Flush()
	for _, p := range r.Phases {
		if p.Errors > 0 {
			fmt.Fprintf(w, "  %s errors by status: %s\n", p.Name, counts(p.ErrorsByStatus))
		}
		if p.Note != "" {
			fmt.Fprintf(w, "  %s: %s\n", p.Name, p.Note)
		}
	}

	e := r.E2E
	fmt.Fprintf(w, "\ntime to webhook: payment POST 201 → signed payment.success received (%d payments, %d clients)\n",
		e.Payments, r.flagInt("c"))
	fmt.Fprintf(w, "  p50 %s  p90 %s  p99 %s  max %s  errors %d (missing webhooks %d)\n",
		ms(e.Latency.P50), ms(e.Latency.P90), ms(e.Latency.P99), ms(e.Latency.Max), e.Errors, e.Missing)
	if e.Delay != nil {
		fmt.Fprintf(w, "  includes TEST_PROCESSING_DELAY = %s; subtract it for the gateway's own share\n", ms(*e.Delay))
	} else {
		fmt.Fprintln(w, "  includes the target's TEST_PROCESSING_DELAY, which bench cannot see with -url")
	}
	b := r.Backlog
	fmt.Fprintf(w, "backlog: the last payment.success of the payments phase (%d payments) arrived %.1f s after it ended (missing %d);\n"+
		"  %.0f payments/s processed and delivered over the phase plus its backlog\n", b.Payments, b.LastAfter, b.Missing, b.Rate)
	fmt.Fprintf(w, "webhooks received by the end (later ones not awaited): %s; bad signatures %d, duplicate final events %d\n",
		counts(r.Receiver.Events), r.Receiver.BadSignatures, r.Receiver.Duplicates)

	fmt.Fprintln(w, "\nmemory")
	if m := r.Memory; m.StartRSS > 0 {
		fmt.Fprintf(w, "  gateway RSS (paygate process only, not its PostgreSQL): start %s, peak %s, end %s\n",
			mib(m.StartRSS), mib(m.PeakRSS), mib(m.EndRSS))
	} else {
		fmt.Fprintln(w, "  gateway RSS: skipped (-url target)")
	}
	if v, ok := r.Metrics["go_memstats_heap_inuse_bytes"]; ok {
		fmt.Fprintf(w, "  /metrics at end: go_memstats_heap_inuse_bytes %s, go_goroutines %.0f\n", mib(int64(v)), r.Metrics["go_goroutines"])
	} else {
		fmt.Fprintln(w, "  /metrics at end: go_memstats_heap_inuse_bytes and go_goroutines not found")
	}
	if r.Startup > 0 {
		fmt.Fprintf(w, "  start-up (process start to /health 200, includes initdb): %.1f s\n", r.Startup)
	}
	if r.Machine.Target == "started by bench" {
		fmt.Fprintf(w, "  gateway log at LOG_LEVEL=warn: %d lines\n", r.GatewayLog.Lines)
		for _, l := range r.GatewayLog.First {
			fmt.Fprintf(w, "    %s\n", truncate(l, 200))
		}
	}

	m := r.Machine
	fmt.Fprintf(w, "\nmachine: %d CPUs (%s), %s/%s, %s\n", m.CPUs, m.Model, m.OS, m.Arch, m.Go)
	var names []string
	for k := range r.Flags {
		names = append(names, k)
	}
	sort.Strings(names)
	var fl []string
	for _, k := range names {
		fl = append(fl, "-"+k+"="+r.Flags[k])
	}
	fmt.Fprintf(w, "flags: %s\n", strings.Join(fl, " "))
}

func (r *Report) flagInt(name string) int {
	var n int
	fmt.Sscan(r.Flags[name], &n)
	return n
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
