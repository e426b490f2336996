package audit

import "errors"

// ErrTampered is returned by Verify when the stored ledger is not an unbroken
// hash chain: a record is missing, out of order, malformed or altered. The
// error is always a *ChainError (or, for damage a Store finds below the record
// level, an error from the Store) that wraps ErrTampered.
var ErrTampered = errors.New("ledger tampered")

// ErrMalformed is returned by Decode when the bytes are not exactly the
// canonical encoding of a version-1 entry: invalid JSON, unknown or missing
// fields, an unsupported version, a bad time or hash, or any other byte form
// that Encode would not have produced.
var ErrMalformed = errors.New("malformed ledger record")

// ErrInvalid is returned by Encode and Log.Append for an entry or event that
// cannot be recorded faithfully: a string that is not valid UTF-8, a time
// outside the years 0000-9999, a malformed hash, or an event with no Action.
var ErrInvalid = errors.New("invalid ledger entry")

// ErrNotNext is returned by CheckNext, and so by a Store's AppendEntry, when
// the entry to append does not link to the current head: its Seq is not
// head.Seq+1 (1 for an empty ledger), its PrevHash is not head.Hash (ZeroHash
// for an empty ledger), or its Hash is not its own ComputeHash.
var ErrNotNext = errors.New("entry does not follow the ledger head")
