package payments

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"paygate/db"
	"paygate/idempotency"
	"paygate/metrics"
	"paygate/webhooks"
)

// Orders and payments are created in batches (db.Batcher): the requests that
// come while a batch of creations runs make the next one. A batch of orders
// without keys is one INSERT, which commits alone. A batch of payments is a
// transaction of one INSERT for all its payments, one for all their
// payment.created events (and one for the decision jobs of those this process
// does not decide itself, with River's insert notification), and one commit.
// Each request's payment and event still commit together or not at all; they
// commit with the others of their batch. One request's own statements cost the
// database more than the rows they write (a statement's start, its plan, the
// CHECK constraints read again, a commit): in the bench's burst, the database's
// CPU per payment halved, and per order in the orders phase it fell by more
// than three quarters (docs/benchmarks-history.md, session 10). A payment's
// Idempotency-Key is claimed first, and its answer written, in the batch's
// transaction (idempotency.ClaimTx and SettleTx: a statement each for all the
// batch's keys, and three round trips more when a key is taken already, for the
// take-over of expired ones, with a fourth for the payments of keys taken
// over), so the key commits with its payment or not at all, as for a request
// alone. The transaction is pipelined (db.InTx): on kept plans, BEGIN travels
// with the keys' claim and the payments' INSERT (which leaves out the keyed
// requests whose keys the claim did not take: idempotency.Work), and the keys'
// answers, the events and the jobs with COMMIT, so that a batch takes two round
// trips with keys or without, where pgx's own transaction took eight and four
// (one more each with decision jobs). A key the batch does not claim (answered,
// in progress, repeated in the batch) leaves its request to run alone. An
// order's key is claimed and answered the same way (createOrdersTx). A repeat
// of a keyed request therefore replays after a batch's claim finds its key
// taken: a few round trips more than a request alone would take.
//
// A request whose payment the batch does not insert (no such order, a paid
// one, one with a payment in progress: the INSERT skips what a unique index
// refuses, so that one such request does not fail its batch) is run again
// alone (CreatePaymentTx, its key claimed anew), which says why and
// remembers it, or creates the payment should the order have become free
// meanwhile. A failed batch is run again one request at a time
// (db.Batcher), unless the database did not answer (db.IsUnavailable) or
// its COMMIT may have committed (db.ErrCommitUnknown). A batch leaves out
// the requests past their deadline and ends by the earliest deadline of
// the others (idempotency.InBatch), so no request is answered
// an error while its payment commits after, unless its COMMIT was on its
// way; a client that goes away may find its payment created, as when it
// goes away during the COMMIT. The order's one live payment
// (payments_one_live_per_order) keeps a retry from charging twice.
//
// One batch waits for its slowest row: a creation on an order whose payment
// another transaction is writing (a decision, another process's batch, a
// request run alone: short transactions) waits for it, and its batch with
// it, and, for up to StallAfter, the requests queued for the next batch
// behind it, which a spare batch then takes (SpareBatches); should that
// outlast the earliest deadline, every request of the batch is answered
// 503, as when the database does not answer in time. A key that
// another transaction holds is waited for only briefly: the batch runs
// again without its keyed requests, which run alone
// (idempotency.ErrClaimWait).
const (
	// createFlights batches of payments, and as many of orders, run at
	// once; maxBatch bounds each. One: the requests that come while a
	// batch runs all wait for the next, so batches are larger, each
	// request's share of a batch's statements smaller, and the database has
	// one transaction of each at a time (unless one stalls: StallAfter);
	// with two, the database's CPU per
	// payment was a tenth higher and p99 a quarter longer at 64 clients
	// (docs/benchmarks-history.md, "One creation batch at a time"). Each
	// batch's deadline still bounds how long one waits for a slow row,
	// and StallAfter how long the requests behind it wait for it.
	// CREATE_BATCHES (Service.CreateBatches) sets it: with one, a
	// process's creations are written by one database session at a time,
	// so a gateway whose database has cores to spare may want more.
	createFlights = 1
	// createTimeout bounds a batch whose requests have no deadline (a
	// request's own ends it earlier: db.Due): REQUEST_TIMEOUT's default.
	createTimeout = 10 * time.Second
)

// A creation batch that stalls (a row held elsewhere, a database that has
// stopped answering or answers slowly) holds up the requests queued behind
// it, of every merchant, until the oldest has waited StallAfter: then a
// spare batch takes them (db.Batcher.WithSpares), and up to SpareBatches
// run besides the flights (the defaults of CREATE_STALL and CREATE_SPARES).
// A spare takes whatever is queued, so one whose requests need the stalled
// batch's rows (a retry of the same order's payment) stalls too; once
// every spare has, the queue waits as before, up to its requests'
// deadlines. Over one bench run (orders, payments at 16
// and 64 clients, the burst, the steady phase, refunds) no request waited
// more than 70 ms for its batch to start (99.8 % of batches under 30 ms;
// docs/benchmarks-history.md, "Spare batches"), so a healthy gateway does
// not start them and its batches stay large; a database whose batches
// take longer than StallAfter does, up to three creation transactions of
// each kind at once. Refunds use the same.
const (
	StallAfter   = 250 * time.Millisecond
	SpareBatches = 2
)

// creation is a validated payment to create, with its ids, its decision
// key and its request's deadline (zero: none); and, for a request with an
// Idempotency-Key, its claim and the view of the payment its answer is.
type creation struct {
	p        Payment
	key      uuid.UUID
	deadline time.Time
	claim    *idempotency.Claim
	view     func(Payment) any
}

// created is a creation's outcome: its payment, or ok false when the batch
// did not insert it.
type created struct {
	p  Payment
	ok bool
}

// CreatePayment creates a payment, as CreatePaymentTx does, in a batch of
// the creations that come at the same time. With claim (a request's
// Idempotency-Key: idempotency.DoBatched), the batch claims its key and
// remembers view(p) as the answer. ok false says the batch did not create
// it (nor remembered anything): the caller runs the request again with
// CreatePaymentTx, which answers why. A keyed request's invalid input is
// left to that run too, which remembers its answer under the key.
func (s *Service) CreatePayment(ctx context.Context, merchantID uuid.UUID, in PaymentInput, claim *idempotency.Claim, view func(Payment) any) (p Payment, ok bool, err error) {
	p, err = newPayment(merchantID, in)
	if err != nil && claim != nil {
		return Payment{}, false, nil
	}
	if err != nil {
		return Payment{}, false, err
	}
	deadline, _ := ctx.Deadline()
	res, err := s.creations().Do(ctx, creation{p: p, key: uuid.New(), deadline: deadline, claim: claim, view: view})
	return res.p, res.ok, err
}

func (s *Service) creations() *db.Batcher[creation, created] {
	s.once.Do(func() {
		s.batches = db.NewBatcher(maxBatch, s.flights(), createTimeout, s.createBatch).WithLogger(s.Logger).
			WithSpares(s.Spares, cmp.Or(s.Stall, StallAfter), func() { metrics.SpareBatch("payments") })
	})
	return s.batches
}

// createBatch creates a batch's payments in one transaction (createManyTx),
// under idempotency.InBatch's rules for deadlines and keys in progress: as
// for a request alone, whose statements its deadline cancels, no request is
// answered an error while its payment commits after, unless its COMMIT was
// on its way.
func (s *Service) createBatch(ctx context.Context, cs []creation) ([]created, error) {
	return idempotency.InBatch(ctx, cs, func(ctx context.Context, live []creation) ([]created, error) {
		start := time.Now() // before the transaction's first statement
		tables := []string{"payments", "orders"}
		if slices.ContainsFunc(live, func(c creation) bool { return c.claim != nil }) {
			tables = append(tables, "idempotency_keys")
		}
		return db.InTx(s.KeptPlans.For(s.Pool, tables...), func(ctx context.Context, tx pgx.Tx, live []creation) ([]created, error) {
			return s.createManyTx(ctx, tx, live, start)
		})(ctx, live)
	})
}

// flights is how many creation batches of each kind run at once.
func (s *Service) flights() int { return cmp.Or(s.CreateBatches, createFlights) }

func (c creation) Due() time.Time               { return c.deadline }
func (c creation) KeyClaim() *idempotency.Claim { return c.claim }

// createManyTx inserts the payments of cs that their orders take, with
// their payment.created events and, for those this process does not decide
// itself (first.go), their decision jobs; claims the keys of those with one
// first, and writes their answers (idempotency.ClaimTx, SettleTx); and
// answers each creation at its index. The payments' INSERT is the claim's
// work (idempotency.Work): it travels with the claim, and leaves out the
// keyed creations whose keys the claim does not claim. start is a moment
// before tx's first statement.
func (s *Service) createManyTx(ctx context.Context, tx pgx.Tx, cs []creation, start time.Time) ([]created, error) {
	var inserted []Payment
	claimed, err := idempotency.ClaimAllTx(ctx, tx, cs, func(do []bool) (string, []any, func(pgx.Rows) error) {
		var todo []creation
		for i, c := range cs {
			if do[i] {
				todo = append(todo, c)
			}
		}
		sql, args := insertPayments(tx, todo)
		return sql, args, func(rows pgx.Rows) error {
			ps, err := pgx.CollectRows(rows, pgx.RowToStructByName[Payment])
			inserted = append(inserted, ps...)
			return err
		}
	})
	if err != nil {
		return nil, err
	}
	at := make(map[string]int, len(cs)) // a payment's index in cs
	for i, c := range cs {
		at[c.p.ID] = i
	}
	res := make([]created, len(cs))
	events := make([]webhooks.Event, len(inserted))
	delays := make([]time.Duration, len(inserted))
	for j, p := range inserted {
		i := at[p.ID]
		if cs[i].claim != nil && !claimed[i] {
			return nil, fmt.Errorf("payments: inserted %s, whose key the batch did not claim", p.ID)
		}
		res[i] = created{p: p, ok: true}
		events[j], delays[j] = paymentEvent(p, webhooks.EventPaymentCreated), s.Delay(p.Method)
	}
	take, taken := s.first.Load().reserve(tx, start, delays...)
	now := time.Now() // the payments' creation, give or take the INSERT
	var jobs []river.InsertManyParams
	for j, p := range inserted {
		decideAt := now.Add(delays[j])
		if taken[j] {
			take(j, p, cs[at[p.ID]].key, decideAt)
		} else {
			jobs = append(jobs, river.InsertManyParams{Args: ProcessArgs{PaymentID: p.ID, MerchantID: p.MerchantID, DecideAt: decideAt}})
		}
	}
	if err := idempotency.SettleCreatedTx(ctx, tx, cs, claimed, func(i int) (any, bool) {
		if !res[i].ok {
			return nil, false
		}
		return cs[i].view(res[i].p), true
	}); err != nil {
		return nil, err
	}
	if err := s.emitTx(ctx, tx, events...); err != nil {
		return nil, err
	}
	return res, db.InsertJobsAtCommit(ctx, tx, jobs...)
}

// insertPayments is the statement that inserts the payments of cs whose
// orders exist (for their merchant) and take them, with the orders' amounts
// and currencies and the creations' decision keys, and returns them ("" for
// none). It leaves out a keyed creation whose key its transaction has not
// claimed (idempotency.ClaimedHere: a request's key is its merchant's), and
// skips, rather than fails on, a payment a unique index refuses: on an
// order that is paid or has a payment in progress
// (payments_one_live_per_order), or a second of cs on one order. The rows
// go in order id order, so that two batches that wait for each other's
// payments on the same orders wait in one order, never in a cycle; but for
// the payments of expired keys taken over (idempotency.ClaimTx), inserted
// in a second statement: should two batches then wait in a cycle, which
// takes repeats a day apart on the same orders, PostgreSQL breaks it as a
// deadlock, and the batch it fails runs again one request at a time. The
// keys' table is read only when a creation has a key, so that a batch
// without keys keeps its plans once payments and orders have grown
// (db.KeptPlans).
func insertPayments(q db.Querier, cs []creation) (sql string, args []any) {
	if len(cs) == 0 {
		return "", nil // a batch of repeats: no statement
	}
	cs = slices.SortedFunc(slices.Values(cs), func(a, b creation) int {
		return cmp.Or(cmp.Compare(a.p.OrderID, b.p.OrderID), cmp.Compare(a.p.ID, b.p.ID))
	})
	n := len(cs)
	ids, orderIDs, merchantIDs, keys := make([]string, n), make([]string, n), make([]uuid.UUID, n), make([]uuid.UUID, n)
	methods, vpas, networks, last4s := make([]string, n), make([]*string, n), make([]*string, n), make([]*string, n)
	var routes, idemKeys []*string // the creations' keys, NULL for none; nil when none has one
	for i, c := range cs {
		ids[i], orderIDs[i], merchantIDs[i], keys[i] = c.p.ID, c.p.OrderID, c.p.MerchantID, c.key
		methods[i], vpas[i], networks[i], last4s[i] = c.p.Method, c.p.VPA, c.p.CardNetwork, c.p.CardLast4
		if c.claim != nil {
			if routes == nil {
				routes, idemKeys = make([]*string, n), make([]*string, n)
			}
			routes[i], idemKeys[i] = &c.claim.Route, &c.claim.Key
		}
	}
	args = []any{db.PlanMode(q), ids, orderIDs, merchantIDs, methods, vpas, networks, last4s, keys}
	from := `unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::uuid[])
		     WITH ORDINALITY AS c(id, order_id, merchant_id, method, vpa, card_network, card_last4, decision_key, n)`
	where := ""
	if routes != nil {
		args = append(args, routes, idemKeys)
		from = `unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::uuid[],
		            $9::text[], $10::text[])
		     WITH ORDINALITY AS c(id, order_id, merchant_id, method, vpa, card_network, card_last4, decision_key,
		                          route, key, n)`
		where = `
		WHERE ` + idempotency.ClaimedHere("c.merchant_id", "c.route", "c.key")
	}
	return `
		INSERT INTO payments (id, order_id, merchant_id, amount, currency, method, vpa, card_network, card_last4, status,
		                      decision_key)
		SELECT c.id, o.id, o.merchant_id, o.amount, o.currency, c.method, c.vpa, c.card_network, c.card_last4, 'pending',
		       c.decision_key
		FROM ` + from + `
		JOIN orders o ON o.id = c.order_id AND o.merchant_id = c.merchant_id` + where + `
		ORDER BY c.n
		ON CONFLICT DO NOTHING
		RETURNING ` + paymentColumns, args
}

// orderCreation is a validated order to create, with its id, its
// request's deadline (zero: none) and, for a request with an
// Idempotency-Key, its claim.
type orderCreation struct {
	o        Order
	deadline time.Time
	claim    *idempotency.Claim
}

// CreateOrder creates an order, as CreateOrderTx does, in a batch of the
// orders that come at the same time: one INSERT and one commit for all of
// them. With claim (a request's Idempotency-Key: idempotency.DoBatched), the
// batch claims its key and remembers the order as the answer, in one
// transaction with it. ok false says the batch did not create it (nor
// remembered anything): a keyed request whose input is invalid, whose key
// the batch did not claim, or that was left out of its batch; the caller
// runs it again with CreateOrderTx. An order's INSERT can fail only as the
// database fails (its fields are validated, its id is new); a failed batch
// is run again one order at a time (db.Batcher). A request without a key
// left out of its batch, its deadline passed (db.Due), is answered that
// error.
func (s *Service) CreateOrder(ctx context.Context, merchantID uuid.UUID, in OrderInput, claim *idempotency.Claim) (o Order, ok bool, err error) {
	o, verr := in.order()
	if verr != nil && claim != nil {
		return Order{}, false, nil
	}
	if verr != nil {
		return Order{}, false, verr
	}
	o.ID, o.MerchantID = db.NewID("order_"), merchantID
	deadline, _ := ctx.Deadline()
	made, err := s.orderCreations().Do(ctx, orderCreation{o: o, deadline: deadline, claim: claim})
	switch {
	case err != nil:
		return Order{}, false, err
	case made != nil:
		return *made, true, nil
	case claim != nil:
		return Order{}, false, nil
	}
	return Order{}, false, context.DeadlineExceeded
}

func (s *Service) orderCreations() *db.Batcher[orderCreation, *Order] {
	s.ordersOnce.Do(func() {
		s.orderBatches = db.NewBatcher(maxBatch, s.flights(), createTimeout, s.createOrders).WithLogger(s.Logger).
			WithSpares(s.Spares, cmp.Or(s.Stall, StallAfter), func() { metrics.SpareBatch("orders") })
	})
	return s.orderBatches
}

// createOrders inserts a batch's orders under idempotency.InBatch's rules,
// and answers each at its index: nil for those left out. Without keys, the
// batch is one statement (its own transaction); with keys, a transaction
// that claims them first and writes their answers (createOrdersTx).
func (s *Service) createOrders(ctx context.Context, cs []orderCreation) ([]*Order, error) {
	return idempotency.InBatch(ctx, cs, func(ctx context.Context, live []orderCreation) ([]*Order, error) {
		if !slices.ContainsFunc(live, func(c orderCreation) bool { return c.claim != nil }) {
			return insertOrders(ctx, s.KeptPlans.For(s.Pool), live) // it reads no table
		}
		return db.InTx(s.KeptPlans.For(s.Pool, "idempotency_keys"), createOrdersTx)(ctx, live)
	})
}

func (c orderCreation) Due() time.Time               { return c.deadline }
func (c orderCreation) KeyClaim() *idempotency.Claim { return c.claim }

// createOrdersTx claims the keys of cs, inserts the orders of those without
// a key or with a key claimed, and writes their answers; it answers each at
// its index, nil for the keyed ones whose key it did not claim.
func createOrdersTx(ctx context.Context, tx pgx.Tx, cs []orderCreation) ([]*Order, error) {
	claimed, err := idempotency.ClaimAllTx(ctx, tx, cs, nil)
	if err != nil {
		return nil, err
	}
	var todo []orderCreation
	var at []int // a todo's index in cs
	for i, c := range cs {
		if c.claim == nil || claimed[i] {
			todo, at = append(todo, c), append(at, i)
		}
	}
	made, err := insertOrders(ctx, tx, todo)
	if err != nil {
		return nil, err
	}
	res := make([]*Order, len(cs))
	for j, i := range at {
		res[i] = made[j]
	}
	return res, idempotency.SettleCreatedTx(ctx, tx, cs, claimed, func(i int) (any, bool) { return res[i], res[i] != nil })
}

// insertOrders inserts cs in one statement, and answers each at its index.
func insertOrders(ctx context.Context, q db.Querier, cs []orderCreation) ([]*Order, error) {
	n := len(cs)
	if n == 0 {
		return nil, nil // a batch of repeats: no statement
	}
	ids, merchantIDs, amounts, currencies := make([]string, n), make([]uuid.UUID, n), make([]int64, n), make([]string, n)
	receipts, notes := make([]*string, n), make([]map[string]string, n)
	for i, c := range cs {
		ids[i], merchantIDs[i], amounts[i], currencies[i] = c.o.ID, c.o.MerchantID, c.o.Amount, c.o.Currency
		receipts[i], notes[i] = c.o.Receipt, c.o.Notes
	}
	rows, _ := q.Query(ctx, `
		INSERT INTO orders (id, merchant_id, amount, currency, receipt, notes, status)
		SELECT c.id, c.merchant_id, c.amount, c.currency, c.receipt, c.notes, 'created'
		FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[])
		     AS c(id, merchant_id, amount, currency, receipt, notes)
		RETURNING id, merchant_id, amount, currency, receipt, notes, status, created_at, updated_at`,
		db.PlanMode(q), ids, merchantIDs, amounts, currencies, receipts, notes)
	made, err := pgx.CollectRows(rows, pgx.RowToStructByName[Order])
	if err == nil && len(made) != n {
		err = fmt.Errorf("orders: %d inserted of %d", len(made), n)
	}
	if err != nil {
		return nil, err
	}
	index := make(map[string]int, n) // an order's index in cs
	for i, c := range cs {
		index[c.o.ID] = i
	}
	res := make([]*Order, n)
	for k := range made {
		res[index[made[k].ID]] = &made[k]
	}
	return res, nil
}
