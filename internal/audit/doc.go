// Package audit is Writ's tamper-evident ledger: an append-only sequence of
// entries, each linked to its predecessor by a SHA-256 hash, so that
// altering, removing or reordering a stored record breaks the chain where it
// happened, and a Merkle tree over the stored records whose signed
// checkpoints make truncation and rewrites detectable once a checkpoint has
// left the machine (docs/ledger.md). It imports only the standard library
// and golang.org/x/mod's tlog and note; where the ledger lives is a Store's
// business (internal/store/boltstore, later etcd).
//
// The ledger is not a log stream. The broker decides what is audited and
// calls Log.Append; operators run Verify (writ audit verify).
//
// # Chain
//
// Entries are numbered from 1 with no gaps. Entry n carries PrevHash, the
// Hash of entry n-1 (ZeroHash, 64 hex zeros, for entry 1), and Hash, the
// lowercase hex SHA-256 of its own canonical encoding. Because the canonical
// encoding includes PrevHash, each Hash commits to the entire ledger up to
// and including that entry. A Store keys each record by its sequence number
// and stores Encode(entry); appends are atomic against the current head
// (Store.AppendEntry, CheckNext), so concurrent appends cannot fork the chain.
//
// # Canonical encoding (version 1)
//
// The canonical encoding is compact JSON (no whitespace, HTML characters not
// escaped, as encoding/json writes it with SetEscapeHTML(false)) of an object
// with these fields, always in this order:
//
//	v                integer, the encoding version: 1
//	seq              integer, the entry's sequence number
//	time             string, RFC 3339 with nanoseconds, UTC, trailing zeros
//	                 of the fraction dropped (time.RFC3339Nano)
//	action, actor, subject, entitlement, rule, outcome, reason, grant_id
//	                 strings (empty when unset)
//	ttl_ns           integer, the TTL in nanoseconds
//	credential_kind, credential_ref
//	                 strings
//	expires          string, as time, or "" when there is no expiry
//	details          object of strings, keys sorted by byte value; omitted
//	                 when there are no details
//	prev_hash        string, 64 lowercase hex digits
//
// Entry.Canonical returns exactly these bytes and Entry.ComputeHash hashes
// them. The stored form (Encode) is the same object with one more field,
// "hash", last; so anyone can check a record without this package by
// deleting `,"hash":"<64 hex>"` from the stored bytes and hashing the rest. Decode accepts only bytes that Encode would produce for the
// decoded entry, so a stored record has exactly one valid byte form: any
// change to a stored byte either fails Decode or changes the entry, and so
// its hash. All strings must be valid UTF-8 and times must fall in the years
// 0000-9999 (ErrInvalid). testdata/chain.golden pins the format; a change to
// it is a new version, and Decode must keep accepting version 1.
//
// # What Verify guarantees
//
// If Verify returns no error, the stored records are keyed 1..Records with
// no gaps, each decodes to the entry its key names, each links to its
// predecessor, and each Hash matches its contents. So no record before the
// last one can have been altered, removed, inserted or reordered without
// also rewriting every later record. On failure it returns a *ChainError
// naming the first bad sequence number; it wraps ErrTampered.
//
// Verify cannot detect, on its own: truncation (removing the last k records
// leaves a valid, shorter chain), a rewritten tail (there is no key in the
// chain, so whoever can write the store can rewrite any suffix and recompute
// the hashes), or a wholesale replacement by another valid chain. Signed
// checkpoints fix that.
//
// # Tree and checkpoints
//
// The records are also the leaves of an RFC 6962 Merkle tree, computed with
// golang.org/x/mod/sumdb/tlog: record seq N is leaf N-1 with leaf hash
// LeafHash(raw) = tlog.RecordHash(raw), raw being the stored bytes (Encode's
// output). A Store that implements TreeReader keeps tlog's stored hashes
// beside the records, written in the same transaction; TreeHash,
// InclusionProof and ConsistencyProof read them.
//
// A Checkpoint (origin, tree size, root hash; the C2SP tlog-checkpoint text)
// is signed as a note (golang.org/x/mod/sumdb/note) with the ledger's own
// Ed25519 key (SignCheckpoint, OpenCheckpoint). Once a checkpoint has left the
// broker's machine (a witness keeps it), VerifyLog, given the records, the
// verifier key and the checkpoints, recomputes the tree from the records and
// requires it to match every checkpoint at its size: a truncated ledger
// fails ("missing: checkpoint covers N records"), and so does a rewritten one
// even with every hash recomputed, since its tree no longer has the
// witnessed root. A witness checks that each new checkpoint extends the
// previous one with a consistency proof (tlog.CheckTree).
//
// Entries never contain secrets: Event has no secret field, and
// CredentialRef holds an identifier (JWT ID, token accessor, lease ID).
package audit
