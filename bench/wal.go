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

	"github.com/jackc/pgx/v5/pgxpool"
)

// TableWAL is one table's share of the WAL written over the burst: its
// heap, TOAST and indexes, per payment. Records that name no relation
// (commits, MultiXacts, checkpoints) are the table "(no relation)"; those
// of the server's other databases (the ceiling's autovacuum, the shared
// catalogs) "(other databases)": pg_stat_wal counts them all.
type TableWAL struct {
	Table      string  `json:"table"`
	Bytes      float64 `json:"bytes_per_payment"`
	IndexBytes float64 `json:"index_bytes_per_payment"`
	Records    float64 `json:"records_per_payment"`
	FPIs       float64 `json:"full_page_images_per_payment"`
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
	return w, pool.QueryRow(ctx, `/* bench */ SELECT pg_current_wal_insert_lsn()::text`).Scan(&w.start)
}

// close ends the window now and returns the bytes of WAL written in it.
func (w *walWindow) close(ctx context.Context) (int64, error) {
	var n int64
	err := w.pool.QueryRow(ctx, `/* bench */ SELECT pg_current_wal_insert_lsn()::text,
		pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)::bigint`, w.start).Scan(&w.end, &n)
	return n, err
}

// byTable reads the closed window's WAL with pg_waldump
// and attributes each record, with its full-page images, to the table of
// its first block (an index's to its table); then it releases the WAL.
func (w *walWindow) byTable(ctx context.Context, pgPID, payments int) ([]TableWAL, error) {
	defer w.pool.Exec(context.Background(), `/* bench */ SELECT pg_drop_replication_slot($1)`, walSlot) //nolint:errcheck // the server goes with the run
	var dataDir string
	var dbOID uint32
	if err := w.pool.QueryRow(ctx, `/* bench */ SELECT current_setting('data_directory'),
		(SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&dataDir, &dbOID); err != nil {
		return nil, err
	}
	// Every relation file of the database, by file node, named after its
	// table: an index after the table it indexes, TOAST after its owner.
	rows, err := w.pool.Query(ctx, `/* bench */ SELECT pg_relation_filenode(c.oid)::text,
			coalesce(t.relname, o.relname, c.relname), i.indrelid IS NOT NULL
		FROM pg_class c
		LEFT JOIN pg_index i ON i.indexrelid = c.oid
		LEFT JOIN pg_class t ON t.oid = i.indrelid
		LEFT JOIN pg_class o ON o.reltoastrelid = c.oid
		WHERE pg_relation_filenode(c.oid) IS NOT NULL`)
	if err != nil {
		return nil, err
	}
	type rel struct {
		table string
		index bool
	}
	rels := map[string]rel{}
	for rows.Next() {
		var node string
		var r rel
		if err := rows.Scan(&node, &r.table, &r.index); err != nil {
			return nil, err
		}
		rels[node] = r
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pgPID))
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(filepath.Dir(exe), "pg_waldump"),
		"-p", filepath.Join(dataDir, "pg_wal"), "-s", w.start, "-e", w.end)
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
		size, _ := strconv.Atoi(string(m[1]))
		table, index := "(no relation)", false
		if b := walBlock.FindSubmatch(line); b != nil {
			r, ok := rels[string(b[2])]
			switch {
			case string(b[1]) != db:
				// The ceiling's (its autovacuum) or the shared catalogs'.
				table = "(other databases)"
			case ok:
				table, index = r.table, r.index
			default:
				table = "(dropped or rewritten since)"
			}
		}
		t := sums[table]
		if t == nil {
			t = &TableWAL{Table: table}
			sums[table] = t
		}
		t.Bytes += float64(size)
		t.Records++
		if index {
			t.IndexBytes += float64(size)
		}
		t.FPIs += float64(bytes.Count(line, []byte(" FPW")))
	}
	// pg_waldump ends with an error when the end is the last record
	// written: what it printed before is the window.
	_ = cmd.Wait()
	if err := sc.Err(); err != nil {
		return nil, err
	}
	var tables []TableWAL
	for _, t := range sums {
		n := float64(max(1, payments))
		tables = append(tables, TableWAL{Table: t.Table, Bytes: t.Bytes / n, IndexBytes: t.IndexBytes / n,
			Records: t.Records / n, FPIs: t.FPIs / n})
	}
	sort.Slice(tables, func(i, j int) bool { return tables[i].Bytes > tables[j].Bytes })
	return tables, nil
}

var (
	walRecord = regexp.MustCompile(`^rmgr: \S+\s+len \(rec/tot\):\s*\d+/\s*(\d+),`)
	walBlock  = regexp.MustCompile(`blkref #0: rel \d+/(\d+)/(\d+)`)
)
