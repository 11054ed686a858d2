package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TableWAL is one table's share of the WAL written over a cost account:
// its heap, TOAST and indexes, per item (a payment of the burst; a refund).
// Records that name no relation (commits, MultiXacts, checkpoints) are the
// table "(no relation)"; those of the server's other databases and shared
// catalogs "(other databases)": the WAL's positions count them all.
type TableWAL struct {
	Table      string  `json:"table"`
	Bytes      float64 `json:"bytes_per_item"`
	IndexBytes float64 `json:"index_bytes_per_item"`
	Records    float64 `json:"records_per_item"`
	FPIs       float64 `json:"full_page_images_per_item"`
	// Kinds is bytes per item by record: "Heap/UPDATE", "index Btree/INSERT_LEAF".
	Kinds map[string]float64 `json:"bytes_per_item_by_record"`
}

// walWindow keeps the WAL of a span for pg_waldump to read afterwards: a
// physical replication slot holds every segment from its start, whatever
// checkpoints happen meanwhile.
type walWindow struct {
	pool       *pgxpool.Pool
	start, end string // LSNs
}

const walSlot = "bench_wal"

func openWALWindow(ctx context.Context, pool *pgxpool.Pool) (*walWindow, error) {
	w := &walWindow{pool: pool}
	if _, err := pool.Exec(ctx, `/* bench */ SELECT pg_create_physical_replication_slot($1, true)`, walSlot); err != nil {
		return nil, err
	}
	if err := pool.QueryRow(ctx, `/* bench */ SELECT pg_current_wal_insert_lsn()::text`).Scan(&w.start); err != nil {
		w.release()
		return nil, err
	}
	return w, nil
}

// close ends the window now and returns the bytes of WAL written in it.
func (w *walWindow) close(ctx context.Context) (int64, error) {
	var n int64
	err := w.pool.QueryRow(ctx, `/* bench */ SELECT l::text, pg_wal_lsn_diff(l, $1::pg_lsn)::bigint
		FROM pg_current_wal_insert_lsn() l`, w.start).Scan(&w.end, &n)
	return n, err
}

// release lets PostgreSQL recycle the window's WAL. A slot left behind
// would keep every later segment and refuse the next window (one name).
func (w *walWindow) release() {
	if _, err := w.pool.Exec(context.Background(), `/* bench */ SELECT pg_drop_replication_slot($1)`, walSlot); err != nil {
		logf("dropping the WAL window's replication slot: %v", err)
	}
}

// byTable reads the closed window's WAL with pg_waldump and attributes
// each record, with its full-page images, to the table of its first block
// (an index's and a TOAST table's to their table).
func (w *walWindow) byTable(ctx context.Context, pgPID, items int) ([]TableWAL, error) {
	var dataDir string
	var dbOID uint32
	if err := w.pool.QueryRow(ctx, `/* bench */ SELECT current_setting('data_directory'),
		(SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&dataDir, &dbOID); err != nil {
		return nil, err
	}
	// pg_waldump reads what is on disk: the window's last records may still
	// be in PostgreSQL's WAL buffers, which the WAL writer flushes within
	// three wal_writer_delay (200 ms) even when nothing commits.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var flushed bool
		if err := w.pool.QueryRow(ctx, `/* bench */ SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn`, w.end).Scan(&flushed); err != nil {
			return nil, err
		}
		if flushed {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the WAL up to %s was not flushed within 10 s", w.end)
		}
	}
	// Every relation file of the database, by file node, named after its
	// table: an index after the table it indexes, TOAST after its owner.
	rows, _ := w.pool.Query(ctx, `/* bench */ SELECT pg_relation_filenode(c.oid)::text AS node,
			coalesce(owner.relname, t.relname, c.relname) AS table, i.indrelid IS NOT NULL AS index
		FROM pg_class c
		LEFT JOIN pg_index i ON i.indexrelid = c.oid
		LEFT JOIN pg_class t ON t.oid = coalesce(i.indrelid, c.oid)
		LEFT JOIN pg_class owner ON owner.reltoastrelid = t.oid
		WHERE pg_relation_filenode(c.oid) IS NOT NULL`)
	type rel struct {
		Node, Table string
		Index       bool
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByName[rel])
	if err != nil {
		return nil, err
	}
	rels := map[string]rel{}
	for _, r := range list {
		rels[r.Node] = r
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pgPID))
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(filepath.Dir(exe), "pg_waldump"),
		"-p", filepath.Join(dataDir, "pg_wal"), "-s", w.start, "-e", w.end)
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sums := map[string]*TableWAL{}
	db := strconv.FormatUint(uint64(dbOID), 10)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		m := walRecord.FindSubmatch(line)
		if m == nil {
			continue
		}
		size, _ := strconv.ParseFloat(string(m[2]), 64)
		table, index := "(no relation)", false
		if b := walBlock.FindSubmatch(line); b != nil {
			r, ok := rels[string(b[2])]
			switch {
			case string(b[1]) != db:
				table = "(other databases)"
			case ok:
				table, index = r.Table, r.Index
			default:
				table = "(dropped or rewritten since)"
			}
		}
		t := sums[table]
		if t == nil {
			t = &TableWAL{Table: table, Kinds: map[string]float64{}}
			sums[table] = t
		}
		kind := string(m[1]) + "/" + string(m[3])
		if index {
			t.IndexBytes += size
			kind = "index " + kind
		}
		t.Bytes += size
		t.Kinds[kind] += size
		t.Records++
		t.FPIs += float64(bytes.Count(line, []byte(" FPW")))
	}
	if err := sc.Err(); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("pg_waldump: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	n := float64(max(1, items))
	var tables []TableWAL
	for _, t := range sums {
		for k := range t.Kinds {
			t.Kinds[k] /= n
		}
		t.Bytes, t.IndexBytes, t.Records, t.FPIs = t.Bytes/n, t.IndexBytes/n, t.Records/n, t.FPIs/n
		tables = append(tables, *t)
	}
	sort.Slice(tables, func(i, j int) bool { return tables[i].Bytes > tables[j].Bytes })
	return tables, nil
}

// topKinds is a table's record kinds by bytes, the largest first.
func (t TableWAL) topKinds(n int) []string {
	kinds := make([]string, 0, len(t.Kinds))
	for k := range t.Kinds {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool { return t.Kinds[kinds[i]] > t.Kinds[kinds[j]] })
	return kinds[:min(n, len(kinds))]
}

var (
	// rmgr: Heap        len (rec/tot):     79/    79, tx: 1, lsn: 0/1, prev 0/0, desc: UPDATE off 2 ..., blkref #0: rel 1663/5/16384 blk 0 FPW
	walRecord = regexp.MustCompile(`^rmgr: (\S+)\s+len \(rec/tot\):\s*\d+/\s*(\d+),.*? desc: ([A-Z_+0-9]+)`)
	walBlock  = regexp.MustCompile(`blkref #0: rel \d+/(\d+)/(\d+)`)
)
