package boltstore_test

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

func TestOpen_CreatesFileWithMode0600(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	mustOpen(t, path, boltstore.Options{})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat: %v", err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("file mode = %v, want 0600", got)
	}
}

func TestOpen_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string)
		opts    boltstore.Options
		wantErr error // nil means any non-nil error
	}{
		{
			name: "group-readable file is refused",
			setup: func(t *testing.T, path string) {
				createLedger(t, path, 1)
				if err := os.Chmod(path, 0o640); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: boltstore.ErrInsecurePermissions,
		},
		{
			name: "world-readable file is refused read-only too",
			setup: func(t *testing.T, path string) {
				createLedger(t, path, 1)
				if err := os.Chmod(path, 0o604); err != nil {
					t.Fatal(err)
				}
			},
			opts:    boltstore.Options{ReadOnly: true},
			wantErr: boltstore.ErrInsecurePermissions,
		},
		{
			name:    "read-only open of a missing file",
			setup:   func(*testing.T, string) {},
			opts:    boltstore.Options{ReadOnly: true},
			wantErr: fs.ErrNotExist,
		},
		{
			name: "newer schema version is refused",
			setup: func(t *testing.T, path string) {
				createLedger(t, path, 1)
				rawUpdate(t, path, func(tx *bolt.Tx) error {
					return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), key(2))
				})
			},
			wantErr: boltstore.ErrUnsupportedSchema,
		},
		{
			name: "newer schema version is refused read-only",
			setup: func(t *testing.T, path string) {
				createLedger(t, path, 1)
				rawUpdate(t, path, func(tx *bolt.Tx) error {
					return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), key(2))
				})
			},
			opts:    boltstore.Options{ReadOnly: true},
			wantErr: boltstore.ErrUnsupportedSchema,
		},
		{
			name: "not a bbolt file",
			setup: func(t *testing.T, path string) {
				if err := os.WriteFile(path, []byte(strings.Repeat("not a database\n", 1000)), 0o600); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "a directory",
			setup: func(t *testing.T, path string) {
				if err := os.Mkdir(path, 0o700); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := dbPath(t)
			tt.setup(t, path)
			s, err := boltstore.Open(path, tt.opts)
			if err == nil {
				mustClose(t, s)
				t.Fatalf("Open() err = nil, want error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Open() err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestOpen_ReadOnlyDoesNotCreate(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	if _, err := boltstore.Open(path, boltstore.Options{ReadOnly: true}); err == nil {
		t.Fatalf("Open(missing, ReadOnly) err = nil")
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("read-only Open created %s (stat err = %v)", path, err)
	}
}

// TestOpen_ReadOnlyWithoutLedgerBucket opens a bbolt file that has never
// been opened writable by Writ: it reads as an empty ledger and refuses
// appends.
func TestOpen_ReadOnlyWithoutLedgerBucket(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	rawUpdate(t, path, func(*bolt.Tx) error { return nil })
	s := mustOpen(t, path, boltstore.Options{ReadOnly: true})
	sum, err := audit.Verify(t.Context(), s)
	if err != nil || sum != (audit.Summary{}) {
		t.Errorf("Verify() = %+v, %v; want empty summary, nil", sum, err)
	}
	if _, ok, err := s.Head(t.Context()); ok || err != nil {
		t.Errorf("Head() = ok %v, err %v; want false, nil", ok, err)
	}
	if _, err := newLog(t, s).Append(t.Context(), grant(1)); !errors.Is(err, bolterrors.ErrDatabaseReadOnly) {
		t.Errorf("Append() on read-only store err = %v, want ErrDatabaseReadOnly", err)
	}
}

// TestOpen_LockedByWriter checks that a second Open of a file a writer
// holds fails fast with ErrInUse instead of hanging, read-only or not, and
// that read-only opens share the file once the writer is gone.
func TestOpen_LockedByWriter(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	w, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatalf("Open(writer) err = %v", err)
	}
	for _, opts := range []boltstore.Options{
		{ReadOnly: true, Timeout: 100 * time.Millisecond},
		{Timeout: 100 * time.Millisecond},
	} {
		start := time.Now()
		s, err := boltstore.Open(path, opts)
		if err == nil {
			mustClose(t, s)
			t.Fatalf("Open(%+v) while a writer holds the file: err = nil, want ErrInUse", opts)
		}
		if !errors.Is(err, boltstore.ErrInUse) {
			t.Errorf("Open(%+v) err = %v, want ErrInUse", opts, err)
		}
		// The message is what an operator sees: it must say why.
		if !strings.Contains(err.Error(), "in use by another writd") {
			t.Errorf("Open(%+v) err = %q, want it to mention another writd", opts, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Open(%+v) took %v, want about the 100ms timeout", opts, d)
		}
	}
	mustClose(t, w)

	r1 := mustOpen(t, path, boltstore.Options{ReadOnly: true})
	r2 := mustOpen(t, path, boltstore.Options{ReadOnly: true})
	for _, r := range []*boltstore.Store{r1, r2} {
		if _, err := audit.Verify(t.Context(), r); err != nil {
			t.Errorf("Verify() err = %v", err)
		}
	}
}

func TestOpen_DefaultTimeout(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	mustOpen(t, path, boltstore.Options{})
	start := time.Now()
	_, err := boltstore.Open(path, boltstore.Options{ReadOnly: true})
	if !errors.Is(err, boltstore.ErrInUse) {
		t.Fatalf("Open() err = %v, want ErrInUse", err)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 10*time.Second {
		t.Errorf("Open() gave up after %v, want about 1s", d)
	}
}

func TestOpen_ReopenKeepsLedger(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	createLedger(t, path, 3)
	createLedger(t, path, 2) // appends to the same file
	s := mustOpen(t, path, boltstore.Options{ReadOnly: true})
	sum, err := audit.Verify(t.Context(), s)
	if err != nil || sum.Records != 5 {
		t.Errorf("Verify() = %+v, %v; want 5 records", sum, err)
	}
}
