// Command bench is the load generator behind `make bench`. It builds paygate,
// starts it on a fresh embedded PostgreSQL in test mode (or, with -url, uses
// a gateway that is already running), drives it with -c concurrent clients
// as the test merchant and prints a report. It measures, in order:
//
//   - orders: POST /api/v1/orders for -d;
//   - payments: POST /api/v1/payments (UPI) for -d, each on a fresh order
//     made by the orders phase, every other one with an Idempotency-Key;
//   - backlog: how long after the payments phase the last of its
//     payment.success webhooks arrived (the workers catching up), and so how
//     many payments per second the workers decide and deliver;
//   - reads: GET /api/v1/payments/{id} for -d, on a quiet queue;
//   - e2e: for -e2e payments, the time from the payment POST returning 201
//     to its signed payment.success webhook arriving at a local receiver.
//     It includes TEST_PROCESSING_DELAY (-delay); subtract it to see the
//     gateway's own share (queue pick-up, decision, delivery). The -c
//     clients send them as a burst, so it includes their queueing;
//   - refunds: POST /api/v1/payments/{id}/refunds on successful payments,
//     skipped with a note while that route does not exist;
//   - memory: the gateway process's RSS at start, peak and end (not the
//     embedded PostgreSQL's processes), and heap in use and goroutines from
//     /metrics at the end.
//
// Latencies are client-side wall times over every request of a phase,
// failed ones included; req/s is requests over the phase's wall time. An
// error is any non-2xx answer (counted by status) or a transport failure
// ("net"). bench, paygate and PostgreSQL share the machine's CPUs, so on a
// small machine the load generator's own cost is in every number. The
// numbers are only comparable between runs on the same machine
// with the same flags, which the report prints. Nothing here asserts a
// number: performance is read, not tested.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// Flags are the knobs of a run; the report prints them.
type Flags struct {
	URL                  string
	C, E2E, Refunds      int
	D, Delay, Wait       time.Duration
	Key, apiSecret, JSON string
}

func main() {
	var f Flags
	flag.StringVar(&f.URL, "url", "", "bench this running gateway (e.g. http://127.0.0.1:8000) instead of starting one; it must reach 127.0.0.1 for webhooks")
	flag.IntVar(&f.C, "c", 32, "concurrent clients in every phase")
	flag.DurationVar(&f.D, "d", 12*time.Second, "duration of each of the orders, payments and reads phases")
	flag.IntVar(&f.E2E, "e2e", 200, "payments whose time to payment.success webhook is measured")
	flag.IntVar(&f.Refunds, "refunds", 200, "refunds to create (on successful payments)")
	flag.DurationVar(&f.Delay, "delay", 200*time.Millisecond, "TEST_PROCESSING_DELAY of the gateway bench starts (not used with -url)")
	flag.DurationVar(&f.Wait, "wait", 60*time.Second, "bound on waiting for the gateway to be healthy and for webhooks")
	flag.StringVar(&f.Key, "key", "key_test_abc123", "merchant API key")
	flag.StringVar(&f.apiSecret, "secret", "secret_test_xyz789", "merchant API secret")
	flag.StringVar(&f.JSON, "json", "", "also write the report as JSON to this file")
	flag.Parse()
	if f.C < 1 || f.D <= 0 || f.E2E < 0 || f.Refunds < 0 {
		fmt.Fprintln(os.Stderr, "bench: -c must be ≥ 1, -d > 0, -e2e and -refunds ≥ 0")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, f); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, f Flags) (err error) {
	rep := &Report{Flags: flagValues(), Machine: machine()}
	rep.Machine.Target = "started by bench"
	if f.URL != "" {
		rep.Machine.Target = f.URL
	}
	base := f.URL
	var gw *gateway
	if base == "" {
		logf("building and starting paygate (TEST_PROCESSING_DELAY=%v)", f.Delay)
		gw, err = startGateway(ctx, f.Delay, f.Wait)
		if gw != nil {
			defer func() {
				rep.Memory.EndRSS = gw.rss()
				gw.stop(rep)
				if err == nil {
					err = rep.write(os.Stdout, f.JSON)
				}
			}()
		}
		if err != nil {
			return err
		}
		base = gw.url
		rep.Startup = gw.startup.Seconds()
		rep.Memory.StartRSS = gw.rss()
		sampleCtx, stopSampling := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); gw.sampleRSS(sampleCtx, &rep.Memory.PeakRSS) }()
		defer func() { stopSampling(); wg.Wait() }()
	} else {
		defer func() {
			if err == nil {
				err = rep.write(os.Stdout, f.JSON)
			}
		}()
	}

	c := newClient(base, f.Key, f.apiSecret, f.C)
	recv, err := startReceiver()
	if err != nil {
		return err
	}
	defer recv.close()
	restore, err := c.configureWebhook(ctx, recv)
	if err != nil {
		return err
	}
	defer restore()

	if err := phases(ctx, c, recv, f, rep); err != nil {
		return err
	}
	rep.Receiver = recv.stats()
	rep.Metrics = c.scrapeMetrics(ctx)
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return nil
}

func phases(ctx context.Context, c *client, recv *receiver, f Flags, rep *Report) error {
	logf("orders: %d clients for %v", f.C, f.D)
	orders := &idList{}
	rep.add(runPhase(ctx, "orders", f.C, f.D, 0, func(i int) (int, error) {
		return c.createOrder(ctx, i, orders)
	}))
	if orders.len() == 0 {
		return errors.New("no order was created; see the errors above")
	}

	logf("payments: %d clients for %v on %d fresh orders", f.C, f.D, orders.len())
	pays := &idList{}
	fresh := orders.snapshot()
	p := runPhase(ctx, "payments (upi)", f.C, f.D, len(fresh), func(i int) (int, error) {
		return c.createPayment(ctx, fresh[i], i%2 == 0, pays, nil)
	})
	if p.Requests == len(fresh) {
		p.Note = fmt.Sprintf("stopped early: used every order of the orders phase (%d)", len(fresh))
	}
	rep.add(p)
	phaseEnd := time.Now()

	ids := pays.snapshot()
	if len(ids) == 0 {
		return errors.New("no payment was created; see the errors above")
	}
	logf("backlog: waiting for the payment.success webhooks of %d payments", len(ids))
	missing := recv.await(ctx, ids, f.Wait)
	rep.Backlog = Backlog{Payments: len(ids), Missing: len(missing)}
	if last := recv.lastArrival(ids); !last.IsZero() {
		rep.Backlog.LastAfter = last.Sub(phaseEnd).Seconds()
		rep.Backlog.Rate = float64(len(ids)-len(missing)) / (p.Seconds + rep.Backlog.LastAfter)
	}

	// Reads run on a quiet queue, after the workers have caught up.
	logf("reads: %d clients for %v", f.C, f.D)
	rep.add(runPhase(ctx, "reads (get payment)", f.C, f.D, 0, func(i int) (int, error) {
		return c.get(ctx, "/api/v1/payments/"+ids[i%len(ids)], nil)
	}))

	logf("e2e: %d payments, time from 201 to payment.success webhook", f.E2E)
	rep.E2E = e2e(ctx, c, recv, f)

	logf("refunds")
	successful := append(recv.succeeded(rep.E2E.ids), recv.succeeded(ids)...)
	rep.add(refunds(ctx, c, f, successful))
	return nil
}

// e2e creates its orders first (not measured), then times each payment from
// its 201 to the arrival of its payment.success webhook.
func e2e(ctx context.Context, c *client, recv *receiver, f Flags) E2E {
	res := E2E{}
	if f.URL == "" {
		d := float64(f.Delay) / float64(time.Millisecond)
		res.Delay = &d
	}
	if f.E2E == 0 {
		return res
	}
	orders := &idList{}
	pre := runPhase(ctx, "e2e orders", f.C, 0, f.E2E, func(i int) (int, error) { return c.createOrder(ctx, i, orders) })
	fresh := orders.snapshot()
	returned := make([]time.Time, len(fresh))
	ids := make([]string, len(fresh))
	post := runPhase(ctx, "e2e payments", f.C, 0, len(fresh), func(i int) (int, error) {
		return c.createPayment(ctx, fresh[i], false, nil, func(id string) { ids[i], returned[i] = id, time.Now() })
	})
	res.Payments, res.Errors = f.E2E, pre.Errors+post.Errors
	for _, id := range ids {
		if id != "" {
			res.ids = append(res.ids, id)
		}
	}
	missing := recv.await(ctx, res.ids, f.Wait)
	res.Missing = len(missing)
	res.Errors += len(missing)
	var lat []time.Duration
	for i, id := range ids {
		if t, ok := recv.successAt(id); ok {
			lat = append(lat, t.Sub(returned[i]))
		}
	}
	res.Latency = percentiles(lat)
	return res
}

// refunds probes the route with a small refund first: a 404 or 405 on a
// payment of our own means refunds are not built yet.
func refunds(ctx context.Context, c *client, f Flags, successful []string) Phase {
	const name = "refunds"
	if f.Refunds == 0 {
		return Phase{Name: name, Skipped: true, Note: "skipped: -refunds 0"}
	}
	if len(successful) < 2 {
		return Phase{Name: name, Skipped: true, Note: "skipped: no successful payments to refund"}
	}
	status, err := c.createRefund(ctx, successful[0], 100)
	switch {
	case err != nil:
		return Phase{Name: name, Skipped: true, Note: "skipped: probe failed: " + err.Error()}
	case status == 404 || status == 405:
		return Phase{Name: name, Skipped: true,
			Note: fmt.Sprintf("skipped: POST /api/v1/payments/{id}/refunds answers %d (no refunds route yet)", status)}
	}
	pool := successful[1:]
	n := min(f.Refunds, len(pool))
	p := runPhase(ctx, name, f.C, 0, n, func(i int) (int, error) { return c.createRefund(ctx, pool[i], 10000) })
	if n < f.Refunds {
		p.Note = fmt.Sprintf("only %d successful payments to refund", n)
	}
	return p
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}
