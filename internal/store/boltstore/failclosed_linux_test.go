package boltstore_test

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

// faultyDisk opens database files normally until broken: then the
// descriptors of the files it opened are replaced by one on a device
// (/dev/null accepts writes and refuses fsync with EINVAL: a failing fsync;
// /dev/full refuses writes with ENOSPC: a full disk), and opening fails
// with EIO, as a failing disk would. heal makes opening work again.
type faultyDisk struct {
	mu     sync.Mutex
	files  []*os.File
	broken atomic.Bool
}

func (d *faultyDisk) OpenFile(name string, flag int, perm os.FileMode) (*os.File, error) {
	if d.broken.Load() {
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EIO}
	}
	f, err := os.OpenFile(name, flag, perm)
	if err == nil {
		d.mu.Lock()
		d.files = append(d.files, f)
		d.mu.Unlock()
	}
	return f, err
}

func (d *faultyDisk) breakNow(tb testing.TB) { d.breakWith(tb, os.DevNull) }

func (d *faultyDisk) breakWith(tb testing.TB, device string) {
	tb.Helper()
	d.broken.Store(true)
	null, err := os.OpenFile(device, os.O_RDWR, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer null.Close()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, f := range d.files {
		// Fails with EBADF for files closed already; that is fine.
		_ = syscall.Dup3(int(null.Fd()), int(f.Fd()), 0)
	}
	d.files = nil
}

func (d *faultyDisk) heal() { d.broken.Store(false) }

// TestStore_FsyncFailure is reliability case T4 (a failed fsync) and T5 (a
// full disk): after the failed commit the store fails closed (no append,
// no read) until Reopen; the append whose caller was told it failed is not
// in the ledger after reopening; later appends build on the last durable
// record and the chain verifies.
func TestStore_FsyncFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, device string
		cause        error
	}{
		{"T4: fsync fails", os.DevNull, syscall.EINVAL},
		{"T5: disk full", "/dev/full", syscall.ENOSPC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			testFailClosed(t, tt.device, tt.cause)
		})
	}
}

func testFailClosed(t *testing.T, device string, cause error) {
	disk := &faultyDisk{}
	var failures atomic.Int32
	path := dbPath(t)
	s := mustOpen(t, path, boltstore.Options{OpenFile: disk.OpenFile, OnFailure: func(error) { failures.Add(1) }})
	l := newLog(t, s)
	const before = 2
	for i := range before {
		if _, err := l.Append(t.Context(), grant(i)); err != nil {
			t.Fatalf("Append(#%d) = %v", i, err)
		}
	}
	if err := s.MakeFreePages(); err != nil {
		t.Fatal(err)
	}

	disk.breakWith(t, device)
	_, err := l.Append(t.Context(), grant(before))
	if !errors.Is(err, boltstore.ErrFailed) || !errors.Is(err, cause) {
		t.Fatalf("Append on a broken disk = %v, want ErrFailed wrapping %v", err, cause)
	}
	if !errors.Is(s.Err(), boltstore.ErrFailed) {
		t.Errorf("Err() = %v, want ErrFailed", s.Err())
	}
	if got := failures.Load(); got != 1 {
		t.Errorf("OnFailure called %d times, want 1", got)
	}
	if _, err := l.Append(t.Context(), grant(before+1)); !errors.Is(err, boltstore.ErrFailed) {
		t.Errorf("Append after the failure = %v, want ErrFailed (fail closed)", err)
	}
	if _, _, err := s.Head(t.Context()); !errors.Is(err, boltstore.ErrFailed) {
		t.Errorf("Head after the failure = %v, want ErrFailed (nothing read from the failed handle)", err)
	}
	if err := s.Reopen(); err == nil {
		t.Fatal("Reopen() while the disk still fails = nil, want the error")
	}
	if !errors.Is(s.Err(), boltstore.ErrFailed) {
		t.Errorf("Err() after a failed Reopen = %v, want ErrFailed", s.Err())
	}
	if _, err := l.Append(t.Context(), grant(before+1)); !errors.Is(err, boltstore.ErrFailed) {
		t.Errorf("Append after a failed Reopen = %v, want ErrFailed (not the closed handle's error)", err)
	}
	if _, _, err := s.Head(t.Context()); !errors.Is(err, boltstore.ErrFailed) {
		t.Errorf("Head after a failed Reopen = %v, want ErrFailed", err)
	}

	disk.heal()
	if err := s.Reopen(); err != nil {
		t.Fatalf("Reopen() after healing = %v", err)
	}
	if err := s.Err(); err != nil {
		t.Errorf("Err() after Reopen = %v, want nil", err)
	}
	head, _, err := s.Head(t.Context())
	if err != nil || head.Seq != before || head.GrantID != grant(before-1).GrantID {
		t.Fatalf("Head() after Reopen = seq %d grant %q, %v; want the last durable record (%d, %q)", head.Seq, head.GrantID, err, before, grant(before-1).GrantID)
	}
	if _, err := l.Append(t.Context(), grant(before+2)); err != nil {
		t.Fatalf("Append after Reopen = %v", err)
	}
	sum, err := audit.Verify(t.Context(), s)
	if err != nil || sum.Records != before+1 {
		t.Errorf("Verify() = %d records, %v; want %d and a valid chain", sum.Records, err, before+1)
	}
}

// TestStore_FsyncFailure_Concurrent: appends race a failing fsync. Every
// append that returned success is in the ledger after Reopen, and no
// append that returned an error is (the ledger never records as granted
// what the caller was told failed).
func TestStore_FsyncFailure_Concurrent(t *testing.T) {
	t.Parallel()
	disk := &faultyDisk{}
	s := mustOpen(t, dbPath(t), boltstore.Options{OpenFile: disk.OpenFile})
	if err := s.MakeFreePages(); err != nil {
		t.Fatal(err)
	}
	l := newLog(t, s)
	var (
		mu        sync.Mutex
		succeeded = map[string]bool{}
		failed    = map[string]bool{}
		wg        sync.WaitGroup
		n         atomic.Int32
		once      sync.Once
	)
	for w := range 8 {
		wg.Go(func() {
			for i := range 40 {
				ev := grant(w*1000 + i)
				if n.Add(1) == 100 {
					once.Do(func() { disk.breakNow(t) })
				}
				_, err := l.Append(t.Context(), ev)
				mu.Lock()
				if err == nil {
					succeeded[ev.GrantID] = true
				} else {
					failed[ev.GrantID] = true
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(failed) == 0 {
		t.Fatal("no append failed; the fault was not injected")
	}
	disk.heal()
	if err := s.Reopen(); err != nil {
		t.Fatalf("Reopen() = %v", err)
	}
	stored := map[string]bool{}
	err := s.ScanRecords(t.Context(), func(_ uint64, raw []byte) error {
		e, err := audit.Decode(raw)
		if err != nil {
			return err
		}
		stored[e.GrantID] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for id := range succeeded {
		if !stored[id] {
			t.Errorf("append %s returned success but is not in the ledger", id)
		}
	}
	for id := range failed {
		if stored[id] {
			t.Errorf("append %s returned an error but is in the ledger", id)
		}
	}
	if _, err := audit.Verify(t.Context(), s); err != nil {
		t.Errorf("Verify() after Reopen = %v", err)
	}
	t.Logf("%d appends succeeded, %d failed", len(succeeded), len(failed))
}

// TestRevertMetaAfter: the meta page of a commit newer than the last
// durable one (what a failed meta fsync leaves in the page cache) is
// invalidated, and the file opens at the durable commit with a chain that
// verifies.
func TestRevertMetaAfter(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l := newLog(t, s)
	for i := range 2 {
		if _, err := l.Append(t.Context(), grant(i)); err != nil {
			t.Fatal(err)
		}
	}
	durable := s.DurableTxID()
	if _, err := l.Append(t.Context(), grant(2)); err != nil {
		t.Fatal(err)
	}
	mustClose(t, s)

	if err := boltstore.RevertMetaAfter(path, durable, nil); err != nil {
		t.Fatalf("RevertMetaAfter() = %v", err)
	}
	s = mustOpen(t, path, boltstore.Options{})
	head, _, err := s.Head(t.Context())
	if err != nil || head.Seq != 2 {
		t.Fatalf("Head() = seq %d, %v; want 2 (the third append reverted)", head.Seq, err)
	}
	if got := s.DurableTxID(); got != durable+1 {
		t.Errorf("DurableTxID() = %d, want %d (the durable commit, then Open's schema check)", got, durable+1)
	}
	if _, err := newLog(t, s).Append(t.Context(), grant(3)); err != nil {
		t.Fatalf("Append after revert = %v", err)
	}
	if sum, err := audit.Verify(t.Context(), s); err != nil || sum.Records != 3 {
		t.Errorf("Verify() = %d records, %v; want 3", sum.Records, err)
	}
	// Nothing newer than the durable commit: nothing to revert.
	if err := boltstore.RevertMetaAfter(path, s.DurableTxID(), nil); err != nil {
		t.Errorf("RevertMetaAfter(current) = %v, want nil", err)
	}
}
