// Package soak runs the real paygate binary under load and breaks it: a
// SIGKILL mid-run with restarts on the same data, a SIGTERM under load,
// replicas of which one is killed, and database outages (the embedded
// postmaster killed, an external PostgreSQL stopped for ten seconds). After
// each, one invariant checker holds the gateway to its promises: every
// payment and refund answered 201 reaches a final state within two minutes,
// with exactly one outcome event; every final event reaches the merchant's
// endpoint; no refund total exceeds its payment; no webhook log is pending
// without a live job; nothing was answered 500.
//
// The tests build the binary, talk to it over loopback only and are bounded
// in count and time. They take minutes, so they run only with
// PAYGATE_SOAK=1 (`make soak`, which CI runs after `make test`).
package soak
