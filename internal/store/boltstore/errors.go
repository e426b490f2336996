package boltstore

import "errors"

// ErrInUse is returned by Open when another process (usually another writd)
// holds the database's file lock for longer than Options.Timeout. A writer
// holds an exclusive lock; read-only opens share a lock with each other but
// not with a writer.
var ErrInUse = errors.New("data dir is in use by another writd?")

// ErrInsecurePermissions is returned by Open when the existing database file
// is readable or writable by its group or by others. Fix it with chmod 600.
var ErrInsecurePermissions = errors.New("database file is accessible to group or others")

// ErrUnsupportedSchema is returned by Open when the database was written by
// a newer Writ whose schema version this one does not know.
var ErrUnsupportedSchema = errors.New("unsupported database schema version")

// ErrCorruptRecord is returned when a stored request, grant, revocation or
// deny-list record cannot be decoded, has a record version this Writ does
// not read, or does not match the key it is stored under. Nothing is
// written over such a record: the caller fails closed.
var ErrCorruptRecord = errors.New("corrupt or unreadable record")

// ErrFailed is returned by every read and write after a commit failed (an
// I/O error such as a failed fsync, or a full disk): the store fails closed
// rather than continue on a file handle whose unsynced pages the kernel may
// have dropped. Reopen clears it.
var ErrFailed = errors.New("store failed a write and is closed until reopened")

// ErrDamaged is returned by a read of a database file that is not a
// consistent bbolt file: truncated, overwritten, or copied with cp while a
// broker was writing it. bbolt itself would panic or fault on such a file;
// the store reports it instead. Take copies with writ audit snapshot.
var ErrDamaged = errors.New("database file is damaged")

// ErrNotCovered is returned by DropPrefix for records no signed checkpoint
// covers yet, or that include the ledger's head.
var ErrNotCovered = errors.New("records not covered by a checkpoint")
