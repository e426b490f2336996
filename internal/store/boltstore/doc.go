// Package boltstore keeps Writ's state in a single bbolt file, for a single
// writd replica: bbolt holds an exclusive lock on the file, so a second
// writd on the same data dir fails to Open with ErrInUse.
//
// # File
//
// Open creates the file with mode 0600 and refuses an existing file that
// its group or others may access (ErrInsecurePermissions): the ledger is an
// audit record and the file will also hold approval state. Every commit is
// fsynced (bbolt's default; NoSync is never set).
//
// # Buckets and keys
//
//	meta     "schema_version" → 8-byte big-endian uint64, currently 1.
//	         Open refuses a larger version (ErrUnsupportedSchema).
//	ledger   8-byte big-endian sequence number → audit.Encode(entry)
//
// Ledger keys are the entry's Seq, so bbolt's byte order is sequence order
// and the last key is the head. Each value carries its own format version
// (the "v" field of the canonical encoding, see package audit), so records
// are versioned independently of the schema; the schema version changes only
// when the bucket layout does. A read-only Open of a file that has no ledger
// bucket (one written by another tool, or before the first writable Open)
// reads as an empty ledger.
//
// # Appends
//
// When other appends are in progress, AppendEntry runs inside DB.Batch:
// concurrent appends are grouped into one write transaction and one fsync
// (group commit), at the cost of up to bbolt's MaxBatchDelay (10ms) of extra
// latency. An append that finds no other in progress commits at once with
// DB.Update, so an idle broker pays one fsync, not the batch delay. Either
// way, inside the transaction it reads the head, calls build, checks the
// result with audit.CheckNext and puts it; Batch may rerun this, which is
// safe because everything is recomputed from the head each time.
package boltstore
