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
//	meta      "schema_version" → 8-byte big-endian uint64, currently 1.
//	          "policy_version" → hash of the policy version last recorded in
//	          the ledger (policy_loaded), written in the same transaction
//	          Open refuses a larger version (ErrUnsupportedSchema).
//	ledger    8-byte big-endian sequence number → audit.Encode(entry)
//	requests  request ID → request record (JSON)
//	grants    request ID + "/" + grant ID → grant record (JSON)
//	grants_by_beneficiary
//	          beneficiary + 0x00 + issued-at + grant ID → the grants key
//	revocations
//	          revoke item ID (kind + ":" + credential ID) → item record (JSON)
//	denied_jtis
//	          jti → {"v":1,"expires":…} (JSON)
//	breakglass
//	          break-glass ID ("bg_…") → break-glass record (JSON)
//	intents   grant ID → intent record (JSON): a Vault credential being
//	          minted whose outcome is not yet in the ledger (see
//	          approval.Intent)
//
// Issued-at is Unix nanoseconds, 8 bytes big-endian with the sign bit
// flipped, so an index scan is in time order. Grant IDs may not contain
// "/" and beneficiaries may not contain NUL, so keys split unambiguously.
//
// The JSON records carry explicit field names and a record version ("v",
// currently 1); a record with another version, or that does not match its
// key, is refused with ErrCorruptRecord, never half-read or overwritten.
// A request record, and likewise a break-glass record, also holds its
// compare-and-swap Version: 1 on create, one more per UpdateRequest (or
// UpdateBreakGlass). Adding a bucket is backward
// compatible and does not change the schema version.
//
// Ledger keys are the entry's Seq, so bbolt's byte order is sequence order
// and the last key is the head. Each value carries its own format version
// (the "v" field of the canonical encoding, see package audit), so records
// are versioned independently of the schema; the schema version changes only
// when the bucket layout changes incompatibly. A read-only Open of a file that has no ledger
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
// safe because everything is recomputed from the head each time. The
// transaction body is appendInTx, the one place a ledger record is written,
// also used by Commit.
//
// # Units of work
//
// Commit (txn.Committer) runs a decision in one DB.Update: its request or
// break-glass changes, its ledger entries (appendInTx), its revocation
// queue and deny-list entries and the policy version are fsynced together,
// or nothing is written when its function fails. It does not group-commit:
// decisions are rare next to grants, and its function then runs once.
//
// # Approval requests
//
// UpdateRequest reads, calls its function and writes in one bbolt write
// transaction; bbolt runs one writer at a time, so that is the
// compare-and-swap (the etcd backend uses Txn on ModRevision instead).
// AddGrant reads the request in the same transaction to index the grant
// by beneficiary. Lists scan their bucket, which is fine for one broker's
// thousands of requests.
//
// # Break-glass
//
// UpdateBreakGlass is a compare-and-swap in the same way as UpdateRequest:
// read, fn and write in one write transaction. ListBreakGlass scans the
// breakglass bucket; a broker sees few break-glass uses, and the open ones
// are what the overdue check and the escalation job read.
//
// # Revocation queue
//
// Revocations returns the revoke.Queue view of the store. Due claims items
// by moving their NextAt forward by a lease in the same write
// transaction, so concurrent RunOnce calls never share an item. It scans
// the bucket, fine for the few revocations ever outstanding. List shows
// what is queued without claiming it.
package boltstore
