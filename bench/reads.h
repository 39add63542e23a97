// Reads that skip the log, benchmarked (issue 13; bench/README.md, "Reads"): `--only-reads`, the
// third part of `make bench`. On the bench's cluster (3 etcd members, 3 counter apps behind
// proxies, one direct app) it runs a read-heavy mix (90 % GET /integer, 10 % the bench's
// non-commutative writes) at 1, 16 and 64 clients twice: with GET /integer on a linearizable read
// route, and fully logged (the proxies restarted without routes); the same with GET
// /journal/digest on a `local` route; the direct app's read latency; the raw cost of a read
// barrier (one linearizable etcd read, EtcdLog::ReadCommittedIndex); and the CPU time per request
// of each process kind at 64 clients for writes, linearizable reads and local reads.
#pragma once

#include "options.h"

namespace k8shmir::bench {

// Runs the read benchmark and writes <results-dir>/reads.json (and reads.png); prints a Markdown
// table and one PASS/FAIL line per target. Returns the process exit code (0: every target met).
int RunReads(Options options);

}  // namespace k8shmir::bench
