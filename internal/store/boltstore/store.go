package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
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
	intentsBucket       = []byte("intents")
)

// dataBuckets are created by a writable Open next to the ledger. Adding a
// bucket is backward compatible (older code ignores it), so it does not
// change schemaVersion.
var dataBuckets = [][]byte{ledgerBucket, requestsBucket, grantsBucket, grantsByBenefBucket, revocationsBucket, deniedJTIsBucket, breakGlassBucket, ledgerByGrantBucket, intentsBucket}

// fileMode is the mode Open creates the database file with.
const fileMode fs.FileMode = 0o600

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
	// BatchDelay is how long a group commit of concurrent ledger appends
	// waits for company. Zero means DefaultBatchDelay.
	BatchDelay time.Duration
}

// Store is a bbolt-backed store. It implements audit.Store. It is safe for
// concurrent use. The caller must Close it.
type Store struct {
	db        *bolt.DB
	appending atomic.Int64 // AppendEntry calls in progress
	intenting atomic.Int64 // BeginIntent and ClearIntent calls in progress
}

// Open opens the database at path, creating it with mode 0600 (and its
// buckets) unless opts.ReadOnly is set. It returns ErrInUse if the file lock
// is not acquired within opts.Timeout, ErrInsecurePermissions if an existing
// file is accessible to group or others, ErrUnsupportedSchema if the file
// is from a newer Writ, and an error wrapping fs.ErrNotExist if
// opts.ReadOnly is set and the file does not exist.
func Open(path string, opts Options) (*Store, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	if err := checkFile(path, opts.ReadOnly); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, fileMode, &bolt.Options{Timeout: opts.Timeout, ReadOnly: opts.ReadOnly})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: lock not acquired within %v: %w: %w", path, opts.Timeout, ErrInUse, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if opts.BatchDelay <= 0 {
		opts.BatchDelay = DefaultBatchDelay
	}
	db.MaxBatchDelay = opts.BatchDelay
	s := &Store{db: db}
	if opts.ReadOnly {
		err = db.View(checkSchema)
	} else {
		err = db.Update(initSchema)
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open %s: %w", path, err), db.Close())
	}
	return s, nil
}

// Close releases the file lock and closes the database. It waits for
// running transactions to finish.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close %s: %w", s.db.Path(), err)
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
