package boltstore

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// schemaVersion is the bucket layout version stored under meta/schema_version.
const schemaVersion uint64 = 1

var (
	metaBucket       = []byte("meta")
	ledgerBucket     = []byte("ledger")
	schemaVersionKey = []byte("schema_version")

	requestsBucket      = []byte("requests")
	grantsBucket        = []byte("grants")
	grantsByBenefBucket = []byte("grants_by_beneficiary")
	revocationsBucket   = []byte("revocations")
	deniedJTIsBucket    = []byte("denied_jtis")
	breakGlassBucket    = []byte("breakglass")
	ledgerByGrantBucket = []byte("ledger_by_grant")

	ledgerTreeBucket        = []byte("ledger_tree")
	ledgerCheckpointsBucket = []byte("ledger_checkpoints")
	intentsBucket           = []byte("intents")
)

// dataBuckets are created by a writable Open next to the ledger. Adding a
// bucket is backward compatible (older code ignores it), so it does not
// change schemaVersion.
var dataBuckets = [][]byte{ledgerBucket, requestsBucket, grantsBucket, grantsByBenefBucket, revocationsBucket, deniedJTIsBucket, breakGlassBucket, ledgerByGrantBucket, ledgerTreeBucket, ledgerCheckpointsBucket, intentsBucket}

// fileMode is the mode Open creates the database file with.
const fileMode fs.FileMode = 0o600

// newFilePageSize is the page size of files Open creates; existing files
// keep theirs. A ledger record is about 600 bytes: a 4 KiB page holds only
// five once bbolt has split it (it keeps two keys for the second page), so
// 16 KiB pages hold ~27 and the append-only ledger's pages end up ~95 %
// full instead of 70 % (docs/BENCHMARKS.md).
const newFilePageSize = 16384

// defaultTimeout is Options.Timeout's default.
const defaultTimeout = time.Second

// DefaultBatchDelay is Options.BatchDelay's default. bbolt's own default
// (10ms) made concurrent ledger appends wait ~10ms each although an fsync
// takes ~0.2ms here (docs/BENCHMARKS.md); 1ms still groups a burst into
// one commit.
const DefaultBatchDelay = time.Millisecond

// Options configures Open.
type Options struct {
	// Timeout is how long Open waits for the file lock before failing with
	// ErrInUse. Zero means one second; it never waits forever.
	Timeout time.Duration
	// ReadOnly opens the file for reading, with a shared lock, so that
	// several readers (writ audit verify) may open it at once but not while a
	// writer has it open. A read-only Open never creates the file or its
	// buckets, and AppendEntry fails.
	ReadOnly bool
	// Check, with ReadOnly, makes Open check the structure of every page
	// of the file (bbolt's Tx.Check) and fail with ErrDamaged on the first
	// problem. It reads the whole file: for offline verification and
	// export, where a torn copy must be reported, not read as a shorter or
	// empty ledger.
	Check bool
	// PageSize is the page size of a file Open creates; zero means 16 KiB
	// (see newFilePageSize). An existing file keeps its own.
	PageSize int
	// BatchDelay is how long a group commit of concurrent ledger appends
	// waits for company. Zero means DefaultBatchDelay.
	BatchDelay time.Duration
	// OnFailure, if set, is called once (from the goroutine whose commit
	// failed) when the store fails closed; Err then reports the failure
	// until Reopen succeeds.
	OnFailure func(error)
	// OpenFile opens the database file; nil means os.OpenFile. Tests use it
	// to inject I/O faults.
	OpenFile func(name string, flag int, perm os.FileMode) (*os.File, error)
}

// Store is a bbolt-backed store. It implements audit.Store. It is safe for
// concurrent use. The caller must Close it.
type Store struct {
	path      string
	opts      Options
	readOnly  bool
	onFailure func(error)

	dbMu      sync.RWMutex // held for reading by every transaction, for writing by Reopen
	db        *bolt.DB
	guard     guard
	appending atomic.Int64 // AppendEntry calls in progress
	onAppend  atomic.Pointer[func(seq uint64)]
	intenting atomic.Int64 // BeginIntent and ClearIntent calls in progress
}

// Open opens the database at path, creating it with mode 0600 (and its
// buckets) unless opts.ReadOnly is set. A writable Open also adds to the
// ledger's Merkle tree any records it does not cover yet (a data dir from a
// Writ without the tree: see migrateTree). It returns ErrInUse if the file lock
// is not acquired within opts.Timeout, ErrInsecurePermissions if an existing
// file is accessible to group or others, ErrUnsupportedSchema if the file
// is from a newer Writ, and an error wrapping fs.ErrNotExist if
// opts.ReadOnly is set and the file does not exist.
func Open(path string, opts Options) (*Store, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	if opts.BatchDelay <= 0 {
		opts.BatchDelay = DefaultBatchDelay
	}
	if err := checkFile(path, opts.ReadOnly); err != nil {
		return nil, err
	}
	s := &Store{path: path, opts: opts, readOnly: opts.ReadOnly, onFailure: opts.OnFailure}
	db, err := s.openDB()
	if err != nil {
		return nil, err
	}
	s.db = db
	return s, nil
}

// openDB opens the bbolt file, checks or creates the schema and resets the
// guard to the file's last commit.
func (s *Store) openDB() (*bolt.DB, error) {
	path, opts := s.path, s.opts
	db, err := bolt.Open(path, fileMode, &bolt.Options{Timeout: opts.Timeout, ReadOnly: opts.ReadOnly, OpenFile: opts.OpenFile, PageSize: cmp.Or(opts.PageSize, newFilePageSize)})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: lock not acquired within %v: %w: %w", path, opts.Timeout, ErrInUse, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.MaxBatchDelay = opts.BatchDelay
	if opts.ReadOnly {
		err = openReadOnly(db, path, opts.Check)
	} else if err = db.Update(initSchema); err == nil {
		if err = migrateTree(db); err == nil {
			err = migrateIndexes(db)
		}
	}
	var txid uint64
	if err == nil {
		err = db.View(func(tx *bolt.Tx) error { txid = uint64(tx.ID()); return nil })
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open %s: %w", path, err), db.Close())
	}
	s.guard.reset(txid)
	return db, nil
}

// Reopen recovers a store that failed closed (Err reports ErrFailed): it
// closes the file handle, reverts a meta page written by the failed commit
// (so that the transaction whose caller was told it failed stays undone,
// and nothing builds on pages the kernel may have dropped), and opens the
// file again. It does nothing if the store has not failed. While the cause
// persists (the disk is still full or failing) it returns the error and
// the store stays closed; call it again later.
func (s *Store) Reopen() error {
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	durable, _, failed := s.guard.state()
	if failed == nil {
		return nil
	}
	_ = s.db.Close() // the handle is not trusted any more; its errors say nothing new
	if err := revertMetaAfter(s.path, durable, s.opts.OpenFile); err != nil {
		return fmt.Errorf("reopen %s: %w", s.path, err)
	}
	db, err := s.openDB()
	if err != nil {
		s.guard.mu.Lock()
		s.guard.failed = err
		s.guard.mu.Unlock()
		return fmt.Errorf("reopen: %w", err)
	}
	s.db = db
	return nil
}

// Close releases the file lock and closes the database. It waits for
// running transactions to finish.
func (s *Store) Close() error {
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close %s: %w", s.path, err)
	}
	return nil
}

// checkFile refuses an existing database file that is not a regular file or
// that its group or others may access.
func checkFile(path string, readOnly bool) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !readOnly:
		return nil // bolt.Open creates it with fileMode.
	case err != nil:
		return fmt.Errorf("open %s: %w", path, err)
	case readOnly && fi.Mode().IsRegular() && fi.Size() == 0:
		return fmt.Errorf("open %s: empty file, not a Writ database: %w", path, ErrDamaged)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("open %s: not a regular file (%v)", path, fi.Mode().Type())
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("open %s: mode %v, want 0600 (chmod 600 %s): %w", path, fi.Mode().Perm(), path, ErrInsecurePermissions)
	}
	return nil
}

// initSchema creates the buckets and records the schema version, or checks
// the one already recorded.
func initSchema(tx *bolt.Tx) error {
	meta, err := tx.CreateBucketIfNotExists(metaBucket)
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", metaBucket, err)
	}
	if v := meta.Get(schemaVersionKey); v == nil {
		if err := meta.Put(schemaVersionKey, binary.BigEndian.AppendUint64(nil, schemaVersion)); err != nil {
			return fmt.Errorf("put schema version: %w", err)
		}
	} else if err := checkSchema(tx); err != nil {
		return err
	}
	for _, name := range dataBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	return nil
}

// checkSchema returns ErrUnsupportedSchema unless the recorded schema
// version, if any, is one this code reads.
func checkSchema(tx *bolt.Tx) error {
	meta := tx.Bucket(metaBucket)
	if meta == nil {
		return nil
	}
	v := meta.Get(schemaVersionKey)
	if v == nil {
		return nil
	}
	if len(v) != 8 {
		return fmt.Errorf("schema version %x is not 8 bytes: %w", v, ErrUnsupportedSchema)
	}
	if got := binary.BigEndian.Uint64(v); got != schemaVersion {
		return fmt.Errorf("schema version %d, this writd reads %d: %w", got, schemaVersion, ErrUnsupportedSchema)
	}
	return nil
}
