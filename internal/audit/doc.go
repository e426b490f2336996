// Package audit is Writ's tamper-evident ledger: an append-only sequence of
// entries, each linked to its predecessor by a SHA-256 hash, so that
// altering, removing or reordering a stored record breaks the chain where it
// happened. It imports only the standard library; where the ledger lives is a
// Store's business (internal/store/boltstore, later etcd).
//
// The ledger is not a log stream. The broker decides what is audited and
// calls Log.Append; operators run Verify (writ audit verify).
//
// # Decisions and their records
//
// A decision (an approval, a revocation) and its record must be stored
// together or not at all. Log.Prepare checks, normalizes and timestamps an
// Event exactly as Append does and returns the Build that links it to a
// head; the caller runs it inside its own store transaction (the store's
// AppendEntry within that transaction), after or before the decision's
// other writes, and commits them all at once. The entry is the same one
// Append would have written; Append is Prepare plus a transaction of its own.
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
// Verify cannot detect, on its own:
//
//   - truncation: removing the last k records leaves a valid, shorter chain;
//   - a rewritten tail: whoever can write the store can rewrite the last
//     record, or any suffix, and recompute the hashes, since there is no key
//     or secret in the chain;
//   - a wholesale replacement of the ledger by another valid chain.
//
// These need external checkpoints: periodically record (Records, Head) from
// Log.Head or Verify somewhere the ledger's host cannot rewrite (another
// system's log, a ticket, a signed note) and check later that the ledger
// still holds that record with that hash.
//
// Entries never contain secrets: Event has no secret field, and
// CredentialRef holds an identifier (JWT ID, token accessor, lease ID).
package audit
