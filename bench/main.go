// Command bench is the load generator behind `make bench`. In one run it
// starts a durable PostgreSQL of its own (postgres.go), measures that
// server's ceiling with paygate stopped — the rate at which it commits the
// transactions paygate's hot paths commit (ceiling.go) — then starts
// paygate (test mode, on that server) and measures:
//
//   - orders: POST /api/v1/orders, closed loop at -c for -d;
//   - payments at 16 and at -c clients: POST /api/v1/payments (UPI) for -d
//     each, on fresh orders, every other one with an Idempotency-Key; then
//     the wait until the workers have delivered every payment.success;
//   - burst: -n payments sent as fast as -c clients can, from the first
//     request to the last payment.success received (the cost account is
//     taken over it, cost.go);
//   - steady: -rate payments a second for -steady, open loop, with the
//     webhook lag (201 to payment.success, minus -delay) percentiles;
//   - refunds: -refunds refunds of burst payments, from the first request
//     to the last refund.processed received (with a cost account of its
//     own, per refund);
//   - paygate's and PostgreSQL's CPU seconds (per phase and per item) and
//     peak memory, from /proc, the bench's own CPU (its clients, receiver
//     and samplers share the cores), and the machine's idle share;
//   - with -profile, CPU profiles of paygate and the bench over the
//     payments phase at -c clients, paygate's read by area (profile.go).
//
// Each throughput is printed as it is and as a ratio of the matching
// ceiling measured minutes before on the same server: the absolute figures
// move with whatever else the machine runs, the ratios much less. A local
// receiver verifies both signatures of every webhook, dedupes by
// webhook-id, and counts duplicates and invalid ones. Orders the payment
// phases use are inserted beforehand with COPY (not measured). The report
// goes to stdout and, as JSON, to -json. Nothing here asserts a number:
// performance is read, not tested.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Flags are the knobs of a run; the report prints them.
type Flags struct {
	Quick                      bool
	C, N, Refunds              int
	D, CeilingD, Steady, Delay time.Duration
	Wait                       time.Duration
	Rate                       float64
	Key, apiSecret, JSON       string
	Cost                       bool
	Env                        envList
	Profile                    string // a folder: profile the payments phase at C clients (profile.go)
}

// envList is -env NAME=value, repeatable: settings for the paygate bench
// starts (queue workers, cooldown, pool size) to compare configurations.
type envList []string

func (e *envList) String() string { return strings.Join(*e, " ") }
func (e *envList) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("want NAME=value, got %q", v)
	}
	*e = append(*e, v)
	return nil
}

func main() {
	var f Flags
	flag.BoolVar(&f.Quick, "quick", false, "a run of under a minute: -d 2s -n 1000 -steady 4s -refunds 200 unless set")
	flag.IntVar(&f.C, "c", 64, "concurrent clients of the closed-loop phases (payments also run at 16)")
	flag.IntVar(&f.N, "n", 20000, "payments in the end-to-end burst")
	flag.IntVar(&f.Refunds, "refunds", 2000, "refunds in the refunds phase (of burst payments)")
	flag.DurationVar(&f.D, "d", 10*time.Second, "duration of the orders and payments phases")
	flag.DurationVar(&f.CeilingD, "ceiling-d", 0, "duration of each ceiling measurement (default -d)")
	flag.Float64Var(&f.Rate, "rate", 300, "offered payments per second in the steady phase (open loop)")
	flag.DurationVar(&f.Steady, "steady", 30*time.Second, "duration of the steady phase")
	flag.DurationVar(&f.Delay, "delay", time.Millisecond, "TEST_PROCESSING_DELAY of paygate")
	flag.DurationVar(&f.Wait, "wait", 5*time.Minute, "bound on waiting for webhooks after a phase")
	flag.StringVar(&f.Key, "key", "key_test_abc123", "merchant API key (the seeded test merchant)")
	flag.StringVar(&f.apiSecret, "secret", "secret_test_xyz789", "merchant API secret")
	flag.StringVar(&f.JSON, "json", "bench/last-run.json", "write the report as JSON here too (empty: don't)")
	flag.BoolVar(&f.Cost, "cost", false, "print the cost accounts' per-statement tables (burst, refunds)")
	flag.Var(&f.Env, "env", "NAME=value added to paygate's environment (repeatable)")
	flag.StringVar(&f.Profile, "profile", "", "write CPU profiles of paygate and the bench, and paygate's lock profile, over the payments phase at -c clients to this folder, and report paygate's CPU and lock waits by area and the database's waits (empty: none)")
	flag.Parse()
	set := map[string]bool{}
	flag.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if f.Quick {
		for name, apply := range map[string]func(){
			"d": func() { f.D = 2 * time.Second }, "n": func() { f.N = 1000 },
			"steady": func() { f.Steady = 4 * time.Second }, "refunds": func() { f.Refunds = 200 },
		} {
			if !set[name] {
				apply()
			}
		}
	}
	if f.CeilingD == 0 {
		f.CeilingD = f.D
	}
	if f.Profile != "" && f.D < 2*time.Second {
		fmt.Fprintln(os.Stderr, "bench: -profile needs -d of 2s or more (its profile leaves out the phase's first half second and at least its last half second)")
		os.Exit(2)
	}
	if f.C < 1 || f.D <= 0 || f.N < 1 || f.Refunds < 0 || f.Rate <= 0 || f.Steady <= 0 {
		fmt.Fprintln(os.Stderr, "bench: -c, -n, -rate must be ≥ 1; -d and -steady > 0; -refunds ≥ 0")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, f); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}
