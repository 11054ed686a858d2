package main

import (
	"context"
	"sort"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Wait is one kind of wait of paygate's database sessions, sampled from
// pg_stat_activity every 50 ms during the burst: what sessions that are in
// a statement or a transaction are doing or waiting on ("CPU" when
// wait_event is null), as a share of all samples. It is the lock and I/O
// profile of the database side: a commit waiting for its WAL flush shows as
// IO:WALSync / LWLock:WALWrite, a commit queued behind NOTIFY's lock as
// Lock:object, a row lock as Lock:transactionid / Lock:tuple.
type Wait struct {
	Event string  `json:"event"`
	Share float64 `json:"share"`
}

// sampleWaits samples until ctx ends and returns the profile.
func sampleWaits(ctx context.Context, pool *pgxpool.Pool) []Wait {
	counts := map[string]int{}
	total := 0
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			out := make([]Wait, 0, len(counts))
			for e, n := range counts {
				out = append(out, Wait{Event: e, Share: float64(n) / float64(max(1, total))})
			}
			sort.Slice(out, func(i, j int) bool { return out[i].Share > out[j].Share })
			return out
		case <-t.C:
		}
		rows, err := pool.Query(context.Background(), `/* bench */ SELECT CASE WHEN wait_event IS NULL THEN 'CPU'
				ELSE wait_event_type || ':' || wait_event END, state
			FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
			  AND state IN ('active', 'idle in transaction') AND query NOT LIKE '%/* bench */%'`)
		if err != nil {
			continue
		}
		for rows.Next() {
			var ev, state string
			if rows.Scan(&ev, &state) == nil {
				if state == "idle in transaction" {
					ev = "idle in transaction (waiting for paygate)"
				}
				counts[ev]++
				total++
			}
		}
		rows.Close()
	}
}
