package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// bench is one run's shared state.
type bench struct {
	f       Flags
	rep     *Report
	pg      *cluster
	pool    *pgxpool.Pool // bench's own connections, for seeding and statistics
	gw      *gateway
	c       *client
	recv    *receiver
	mid     uuid.UUID
	ceiling map[string]Ceiling
}

func run(ctx context.Context, f Flags) (err error) {
	b := &bench{f: f, rep: &Report{Flags: flagValues(), Machine: machine(), Settings: serverSettings},
		ceiling: map[string]Ceiling{}}
	logf("starting a durable PostgreSQL with pg_stat_statements")
	b.pg, err = startCluster(ctx)
	if b.pg != nil {
		defer b.pg.stop()
	}
	if err != nil {
		return err
	}
	logf("building paygate")
	b.gw, err = buildGateway(ctx)
	defer b.gw.remove(b.rep)
	if err != nil {
		return err
	}
	// The ceiling runs in a database of its own on the same server (paygate's
	// schema, applied by paygate migrate), before paygate starts: the
	// database alone, and paygate's database stays as fresh as on a first
	// start.
	if err := b.gw.migrate(ctx, b.pg.url("ceiling")); err != nil {
		return err
	}
	mpool, err := pgxpool.New(ctx, b.pg.url("ceiling")+"&pool_max_conns=1")
	if err != nil {
		return err
	}
	var cmid uuid.UUID
	err = mpool.QueryRow(ctx, `INSERT INTO merchants (name, email, api_key, api_secret_hash, webhook_secret)
		VALUES ('ceiling', 'ceiling@bench.test', 'key_ceiling', sha256('x'), 'whsec_ceiling') RETURNING id`).Scan(&cmid)
	mpool.Close()
	if err != nil {
		return fmt.Errorf("ceiling merchant: %w", err)
	}
	logf("ceiling: the database alone, %d clients through %v connections, %v each", f.C, ceilingConns, f.CeilingD)
	ceilings, err := measureCeilings(ctx, b.pg.url("ceiling"), b.pg.pid(), cmid, f.C, f.CeilingD)
	if err != nil {
		return err
	}
	b.rep.Ceilings = ceilings
	for _, c := range ceilings {
		if c.Best {
			b.ceiling[c.Name] = c
		}
	}
	// Its hundreds of thousands of rows would have autovacuum work on them
	// while paygate runs, on the CPU and WAL that paygate's figures count.
	if err := b.pg.admin(ctx, `DROP DATABASE ceiling WITH (FORCE)`); err != nil {
		return err
	}

	b.pool, err = pgxpool.New(ctx, b.pg.url("paygate")+"&pool_max_conns=8")
	if err != nil {
		return err
	}
	defer b.pool.Close()
	if _, err := b.pool.Exec(ctx, `CREATE EXTENSION pg_stat_statements`); err != nil {
		return err
	}

	logf("starting paygate (TEST_PROCESSING_DELAY=%v %s)", f.Delay, f.Env.String())
	if f.Profile != "" {
		b.gw.adminToken = uuid.NewString()
	}
	if err := b.gw.start(ctx, b.pg.url("paygate"), f.Delay, time.Minute, f.Env); err != nil {
		return err
	}
	b.rep.Startup = b.gw.startup.Seconds()
	if err := b.pool.QueryRow(ctx, `SELECT id FROM merchants WHERE api_key = $1`, f.Key).Scan(&b.mid); err != nil {
		return fmt.Errorf("find the merchant of -key: %w", err)
	}
	stopped := false
	stopGateway := func() {
		if !stopped {
			b.rep.Resources.PaygatePeakRSS = peakRSS(b.gw.pid())
			b.rep.SpareBatches = b.gw.counter("paygate_spare_batches_total")
			b.gw.stop()
			stopped = true
		}
	}
	defer stopGateway()
	start := b.cpuMark()
	sampleCtx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); b.samplePG(sampleCtx) }()

	b.c = newClient(b.gw.url, f.Key, f.apiSecret, f.C)
	if b.recv, err = startReceiver(); err != nil {
		return err
	}
	defer b.recv.close()
	if err := b.c.configureWebhook(ctx, b.recv); err != nil {
		return err
	}
	err = b.phases(ctx)
	end := b.cpuMark()
	b.rep.Resources.PaygateCPU = (end.gateway - start.gateway).Seconds()
	b.rep.Resources.PostgresCPU = (end.db - start.db).Seconds()
	b.rep.Resources.BenchCPU = (end.bench - start.bench).Seconds()
	stopSampling()
	wg.Wait()
	b.rep.Receiver = b.recv.stats()
	if err != nil || ctx.Err() != nil || len(b.rep.Warnings) > 0 {
		// Some work may still be in flight: an event not yet arrived is
		// not lost.
		b.rep.Receiver.Unpaired = -1
	}
	stopGateway()
	if err == nil && ctx.Err() != nil {
		err = errors.New("interrupted")
	}
	b.gw.remove(b.rep)
	if werr := b.rep.write(os.Stdout, f.JSON, f.Cost); err == nil {
		err = werr
	}
	return err
}

func (b *bench) phases(ctx context.Context) error {
	f := b.f
	orders, pays := b.ceiling["order insert"], b.ceiling["payment + job"]

	logf("orders: %d clients for %v", f.C, f.D)
	p := b.measure(ctx, func() Phase {
		return runPhase(ctx, "create orders", f.C, f.D, 0, func(i int) (int, error) {
			status, _, err := b.c.createOrder(ctx, i)
			return status, err
		})
	})
	p.ratio(orders)
	b.rep.add(p)

	for _, conc := range []int{16, f.C} {
		ids, err := seedOrders(ctx, b.pool, b.mid, max(2000, int(1.5*pays.TPS*f.D.Seconds())))
		if err != nil {
			return err
		}
		logf("payments: %d clients for %v", conc, f.D)
		var created idList
		keyed := func(i int) bool { return i%2 == 0 }
		name := fmt.Sprintf("create payments c=%d", conc)
		phase := func() Phase {
			return runPhase(ctx, name, conc, f.D, len(ids), func(i int) (int, error) {
				status, id, err := b.c.createPayment(ctx, ids[i], keyed(i))
				if status == http.StatusCreated && err == nil {
					created.add(id)
				}
				return status, err
			})
		}
		var p Phase
		var ended time.Time // the phase's end, when profiling delayed its return
		if f.Profile != "" && conc == f.C && b.rep.Profile == nil {
			p, ended = b.profilePhase(ctx, f.Profile, name, phase)
		} else {
			p = b.measure(ctx, phase)
		}
		p.Keyed, p.Unkeyed = p.latencyOf(keyed), p.latencyOf(func(i int) bool { return !keyed(i) })
		if p.Requests >= len(ids) {
			p.Note = strings.TrimPrefix(p.Note+"; "+fmt.Sprintf("stopped early: used all %d seeded orders", len(ids)), "; ")
		}
		p.ratio(pays)
		// The backlog: until each of the phase's payments has its
		// payment.success, so that the next phase starts on a quiet queue.
		start := cmp.Or(ended, time.Now())
		all := created.all()
		missing := b.recv.awaitSuccess(ctx, all, f.Wait)
		p.Drain = &Drain{Payments: len(all), Missing: missing, Seconds: time.Since(start).Seconds()}
		p.Drain.Rate = float64(len(all)-missing) / (p.Seconds + p.Drain.Seconds)
		b.awaitIdle(ctx, p.Name, f.Wait)
		b.rep.add(p)
	}

	logf("burst: %d payments from %d clients, until every payment.success has arrived", f.N, f.C)
	burst, err := b.burst(ctx, pays)
	if err != nil {
		return err
	}
	logf("steady: %.0f payments/s for %v, open loop", f.Rate, f.Steady)
	if err := b.steady(ctx); err != nil {
		return err
	}
	if f.Refunds > 0 {
		logf("refunds: %d from %d clients, until every refund.processed has arrived", f.Refunds, f.C)
		b.refunds(ctx, burst[:min(len(burst), f.Refunds)], pays)
	}
	return nil
}

// measure runs a phase and adds the CPU paygate, PostgreSQL and the bench
// itself spent on it.
func (b *bench) measure(ctx context.Context, phase func() Phase) Phase {
	m := b.cpuMark()
	p := phase()
	p.CPU = b.cpuSince(m, p.Requests-p.Errors)
	return p
}

// cpuMark is the CPU that paygate, PostgreSQL and the bench had spent at a
// moment. The bench's own (its clients and webhook receiver, and its
// samplers, which share the machine's cores with paygate and PostgreSQL)
// is that of its process.
// The machine's idle and total clock ticks tell how much of its CPU none
// of them used.
type cpuMark struct {
	gateway, db, bench time.Duration
	idle, total        float64
}

func (b *bench) cpuMark() cpuMark {
	m := cpuMark{gateway: treeUsage(b.gw.pid(), false).CPU, db: treeUsage(b.pg.pid(), false).CPU, bench: selfCPU()}
	m.idle, m.total = machineCPU()
	return m
}

// cpuSince is the CPU spent since m, per item in ms (none for no item),
// and the machine's idle share meanwhile (nil: /proc/stat unread).
func (b *bench) cpuSince(m cpuMark, items int) CPUPer {
	now := b.cpuMark()
	var c CPUPer
	if m.total > 0 && now.total > m.total {
		idle := (now.idle - m.idle) / (now.total - m.total)
		c.Idle = &idle
	}
	if items <= 0 {
		return c
	}
	per := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(items) }
	c.Paygate, c.DB, c.Bench = per(now.gateway-m.gateway), per(now.db-m.db), per(now.bench-m.bench)
	return c
}

// selfCPU is the user and system CPU time of this process.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// burst sends N payments as fast as the clients go and waits for every
// payment.success; the cost account covers it up to the last job's end. It
// returns the payments that succeeded.
func (b *bench) burst(ctx context.Context, pays Ceiling) ([]string, error) {
	f := b.f
	orders, err := seedOrders(ctx, b.pool, b.mid, f.N)
	if err != nil {
		return nil, err
	}
	acct, err := b.openCost(ctx, true)
	if err != nil {
		return nil, err
	}
	defer acct.release()
	ids := make([]string, f.N)
	returned := make([]time.Time, f.N)
	start := time.Now()
	post := runPhase(ctx, "burst POSTs", f.C, 0, f.N, func(i int) (int, error) {
		status, id, err := b.c.createPayment(ctx, orders[i], false)
		if status == http.StatusCreated && err == nil {
			ids[i], returned[i] = id, time.Now()
		}
		return status, err
	})
	created := compact(ids)
	missing := b.recv.awaitSuccess(ctx, created, f.Wait)
	fl := b.flow("burst (end to end)", post, start, ids, returned, false)
	fl.Missing = missing
	fl.ratio(pays)
	// The cost account runs to the end of the last job (the payment.created
	// deliveries may finish after the last payment.success).
	b.awaitIdle(ctx, "the burst", f.Wait)
	fl.CPU = b.cpuSince(acct.cpu, max(1, len(created)))
	b.rep.Flows = append(b.rep.Flows, fl)
	cost, err := acct.done(ctx, "payment of the burst", max(1, len(created)), fl.CPU.Paygate)
	if err != nil {
		return nil, err
	}
	b.rep.Cost = &cost
	var ok []string
	for i, t := range b.recv.arrivals(created, false) {
		if !t.IsZero() {
			ok = append(ok, created[i])
		}
	}
	return ok, nil
}

func (b *bench) steady(ctx context.Context) error {
	f := b.f
	n := int(f.Rate * f.Steady.Seconds())
	orders, err := seedOrders(ctx, b.pool, b.mid, n)
	if err != nil {
		return err
	}
	ids := make([]string, n)
	returned := make([]time.Time, n)
	start, m := time.Now(), b.cpuMark()
	post := openLoop(ctx, fmt.Sprintf("steady POSTs %.0f/s", f.Rate), f.Rate, f.Steady, 1024, func(i int) (int, error) {
		status, id, err := b.c.createPayment(ctx, orders[i], false)
		if status == http.StatusCreated && err == nil {
			ids[i], returned[i] = id, time.Now()
		}
		return status, err
	})
	missing := b.recv.awaitSuccess(ctx, compact(ids), f.Wait)
	fl := b.flow(fmt.Sprintf("steady %.0f/s (end to end)", f.Rate), post, start, ids, returned, false)
	fl.Missing = missing
	fl.Offered = f.Rate
	fl.CPU = b.cpuSince(m, len(compact(ids)))
	b.rep.Flows = append(b.rep.Flows, fl)
	b.awaitIdle(ctx, "the steady phase", f.Wait)
	return nil
}

func (b *bench) refunds(ctx context.Context, payments []string, pays Ceiling) {
	f := b.f
	ids := make([]string, len(payments))
	returned := make([]time.Time, len(payments))
	// The refunds' cost account is a diagnostic: without it the phase is
	// measured all the same.
	m := b.cpuMark()
	acct, err := b.openCost(ctx, false)
	if err != nil {
		logf("the refunds' cost account left out: %v", err)
	} else {
		defer acct.release()
	}
	start := time.Now()
	post := runPhase(ctx, "refund POSTs", f.C, 0, len(payments), func(i int) (int, error) {
		status, id, err := b.c.createRefund(ctx, payments[i], 10000)
		if status == http.StatusCreated && err == nil {
			ids[i], returned[i] = id, time.Now()
		}
		return status, err
	})
	created := compact(ids)
	missing := b.recv.awaitRefunds(ctx, created, f.Wait)
	fl := b.flow("refunds (end to end)", post, start, ids, returned, true)
	fl.Missing = missing
	fl.ratio(pays)
	// To the end of the last job, as for the burst.
	b.awaitIdle(ctx, "the refunds", f.Wait)
	fl.CPU = b.cpuSince(m, len(created))
	b.rep.Flows = append(b.rep.Flows, fl)
	if acct == nil || len(created) == 0 {
		return
	}
	if cost, err := acct.done(ctx, "refund", len(created), fl.CPU.Paygate); err != nil {
		logf("the refunds' cost account left out: %v", err)
	} else {
		b.rep.RefundCost = &cost
	}
}

// flow turns a phase's POSTs and the receiver's arrivals into an
// end-to-end figure: items completed per second from the first request to
// the last webhook, and the lag from each 201 to its webhook minus the
// configured processing delay.
func (b *bench) flow(name string, post Phase, start time.Time, ids []string, returned []time.Time, refunds bool) Flow {
	fl := Flow{Name: name, Items: len(ids), Errors: post.Errors, ErrorsByStatus: post.ErrorsByStatus, Post: post.Latency}
	var last time.Time
	var lag []time.Duration
	arr := b.recv.arrivals(ids, refunds)
	for i, t := range arr {
		if t.IsZero() || ids[i] == "" {
			continue
		}
		fl.Completed++
		last = maxTime(last, t)
		lag = append(lag, max(0, t.Sub(returned[i])-b.f.Delay))
	}
	if fl.Completed > 0 {
		fl.Seconds = last.Sub(start).Seconds()
		fl.Rate = float64(fl.Completed) / fl.Seconds
	}
	fl.Lag = percentiles(lag)
	return fl
}

// samplePG keeps PostgreSQL's peak memory (all its processes' PSS) every
// five seconds and once more at the end. Reading a process's PSS walks its
// page tables, shared buffers included: every half second, as it once did,
// it took 2 % of the machine's CPU during the payments phase (perf), CPU the
// measured processes then lacked.
func (b *bench) samplePG(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-t.C:
		}
		b.rep.Resources.PostgresPeakPSS = max(b.rep.Resources.PostgresPeakPSS, treeUsage(b.pg.pid(), true).RSS)
	}
}

func compact(ids []string) []string {
	var out []string
	for _, id := range ids {
		if id != "" {
			out = append(out, id)
		}
	}
	return out
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
