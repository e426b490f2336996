package daemon

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/store/boltstore"
	"github.com/writ-dev/writ/internal/testenv"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

// faultyDisk opens files normally until broken; then every write to a file
// it opened is discarded and every fdatasync fails (its descriptor now
// points at /dev/null), and opening fails with EIO. heal lets opening work
// again.
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

func (d *faultyDisk) breakNow(t *testing.T) {
	t.Helper()
	d.broken.Store(true)
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, f := range d.files {
		_ = syscall.Dup3(int(null.Fd()), int(f.Fd()), 0) // EBADF for files closed already
	}
	d.files = nil
}

// TestDaemon_FsyncFailure is reliability case T4 end to end: with the
// store's file failing (writes discarded, fsync refused; internal/store
// tests the fsync and full-disk paths one by one), a grant fails with UNAVAILABLE, /readyz says the
// ledger cannot be written (/healthz stays ok), and grants keep failing
// while the disk does; once it heals the daemon reopens the store by itself
// and grants work again. The ledger then holds exactly the grants whose
// callers received a credential, and verifies.
func TestDaemon_FsyncFailure(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	cfg := env.config(t)
	disk := &faultyDisk{}
	d := start(t, t.Context(), cfg, Options{storeOpenFile: disk.OpenFile, storeRetry: 10 * time.Millisecond})
	client := env.dial(t, d)
	grant := func() error {
		_, err := client.IssueCredential(t.Context(), &brokerv1.IssueCredentialRequest{Entitlement: "orders"})
		return err
	}
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + d.HTTPAddr.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if err := grant(); err != nil {
		t.Fatalf("IssueCredential() before the fault = %v", err)
	}
	disk.breakNow(t)
	for i := range 2 {
		if err := grant(); status.Code(err) != codes.Unavailable {
			t.Errorf("IssueCredential() #%d with a failing fsync = %v, want Unavailable", i, err)
		}
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "ledger not writable") {
		t.Errorf("GET /readyz with a failing store = %d %q, want 503 naming the ledger", code, body)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz with a failing store = %d, want 200 (liveness)", code)
	}

	disk.heal()
	testenv.Eventually(t, 30*time.Second, "the store to be reopened", func() bool {
		code, _ := get("/readyz")
		return code == http.StatusOK
	})
	if err := grant(); err != nil {
		t.Fatalf("IssueCredential() after recovery = %v", err)
	}

	if err := d.Shutdown(); err != nil {
		t.Errorf("Shutdown() = %v", err)
	}
	s, err := boltstore.Open(filepath.Join(cfg.DataDir, "writ.db"), boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	granted := 0
	err = s.ScanRecords(t.Context(), func(_ uint64, raw []byte) error {
		e, err := audit.Decode(raw)
		if e.Action == broker.ActionGrant {
			granted++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if granted != 2 {
		t.Errorf("ledger holds %d grant records, want 2 (the failed grants must not be recorded as granted)", granted)
	}
	if _, err := audit.Verify(t.Context(), s); err != nil {
		t.Errorf("Verify() = %v", err)
	}
}

func (d *faultyDisk) heal() { d.broken.Store(false) }
