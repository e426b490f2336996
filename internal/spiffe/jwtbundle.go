package spiffe

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// JWTBundleSource supplies the JWT-SVID signing keys of trust domains. Its
// getter is called for every token verified and must be safe for concurrent
// use. The caller must Close it when done.
type JWTBundleSource interface {
	jwtbundle.Source
	// Close releases the source's resources.
	Close() error
}

var (
	_ JWTBundleSource = (*workloadapi.JWTSource)(nil)
	_ JWTBundleSource = (*JWTBundleFile)(nil)
)

// NewWorkloadJWTBundleSource connects to the SPIFFE Workload API at socket
// and blocks until the first JWT bundles arrive or ctx is done; pass a ctx
// with a deadline. After that the source follows the agent's key rotations
// in the background until Close; ctx does not bound it.
//
// As with NewWorkloadSource, socket must be given (SPIFFE_ENDPOINT_SOCKET is
// never consulted) and an empty one returns ErrConfig.
func NewWorkloadJWTBundleSource(ctx context.Context, socket string) (JWTBundleSource, error) {
	if socket == "" {
		return nil, fmt.Errorf("spiffe: workload API socket: empty address: %w", ErrConfig)
	}
	if _, err := workloadapi.TargetFromAddress(socket); err != nil {
		return nil, fmt.Errorf("spiffe: workload API socket %q: %w: %w", socket, ErrConfig, err)
	}
	src, err := workloadapi.NewJWTSource(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(socket)))
	if err != nil {
		return nil, fmt.Errorf("spiffe: fetch JWT bundles from workload API %s: %w", socket, err)
	}
	return src, nil
}

// JWTBundleFileConfig configures NewJWTBundleFileSource.
type JWTBundleFileConfig struct {
	// Path is the bundle file: a SPIFFE bundle (`spire-server bundle show
	// -format spiffe`; its "jwt-svid" keys are used) or a plain JWKS (every
	// key is used; each needs a "kid"). Required.
	Path string
	// TrustDomain is the trust domain the keys belong to. Required.
	TrustDomain spiffeid.TrustDomain
	// Interval is how often the file is checked for changes. Zero means
	// DefaultPollInterval.
	Interval time.Duration
	// Logger receives reload events. Nil discards them.
	Logger *slog.Logger
}

// JWTBundleFile is a JWTBundleSource read from a file that is re-read when
// it changes, so signing keys can be rotated without a restart. A reload
// that fails leaves the previous keys in service. It is safe for concurrent
// use; the caller must Close it to stop the polling goroutine.
type JWTBundleFile struct {
	cfg     JWTBundleFileConfig
	log     *slog.Logger
	current atomic.Pointer[jwtbundle.Bundle]
	closed  atomic.Bool

	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// NewJWTBundleFileSource loads the bundle file named in cfg and starts
// polling it for changes every cfg.Interval. It returns ErrConfig for a
// missing path or trust domain or a negative interval, an error satisfying
// errors.Is(err, fs.ErrNotExist) for a missing file, and ErrInvalidBundle
// for a file that holds no usable JWT-SVID keys.
//
// ctx bounds only the initial load; its values (not its cancellation) are
// passed to the logger for reload events.
func NewJWTBundleFileSource(ctx context.Context, cfg JWTBundleFileConfig) (*JWTBundleFile, error) {
	switch {
	case cfg.Path == "" || cfg.TrustDomain.IsZero():
		return nil, fmt.Errorf("spiffe: JWT bundle file: Path and TrustDomain are required: %w", ErrConfig)
	case cfg.Interval < 0:
		return nil, fmt.Errorf("spiffe: JWT bundle file: negative interval %s: %w", cfg.Interval, ErrConfig)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultPollInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("spiffe: JWT bundle file: %w", err)
	}
	s := &JWTBundleFile{cfg: cfg, log: cfg.Logger, done: make(chan struct{})}
	stamp := statFile(cfg.Path)
	b, err := LoadJWTBundle(cfg.TrustDomain, cfg.Path)
	if err != nil {
		return nil, err
	}
	s.current.Store(b)
	pollCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = stop
	go s.poll(pollCtx, stamp)
	return s, nil
}

// GetJWTBundleForTrustDomain returns the bundle if td is the file's trust
// domain, and an error otherwise. It implements jwtbundle.Source. It returns
// ErrClosed after Close.
func (s *JWTBundleFile) GetJWTBundleForTrustDomain(td spiffeid.TrustDomain) (*jwtbundle.Bundle, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("spiffe: get JWT bundle: %w", ErrClosed)
	}
	b, err := s.current.Load().GetJWTBundleForTrustDomain(td)
	if err != nil {
		return nil, fmt.Errorf("spiffe: %w", err)
	}
	return b, nil
}

// Close stops polling and waits for the polling goroutine to exit. Close is
// idempotent and always returns nil.
func (s *JWTBundleFile) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.stop()
		<-s.done
	})
	return nil
}

func (s *JWTBundleFile) poll(ctx context.Context, last fileStamp) {
	defer close(s.done)
	ticker := time.NewTicker(s.cfg.Interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		stamp := statFile(s.cfg.Path)
		if stamp == last {
			continue
		}
		last = stamp
		b, err := LoadJWTBundle(s.cfg.TrustDomain, s.cfg.Path)
		if err != nil {
			s.log.WarnContext(ctx, "reload of JWT bundle file failed; still using the previous keys",
				slog.String("jwt_bundle_file", s.cfg.Path), slog.Any("error", err))
			continue
		}
		s.current.Store(b)
		s.log.InfoContext(ctx, "reloaded JWT bundle file",
			slog.String("jwt_bundle_file", s.cfg.Path), slog.Int("keys", len(b.JWTAuthorities())))
	}
}

// LoadJWTBundle reads the JWT-SVID signing keys of td from path: a SPIFFE
// bundle (its "jwt-svid" keys) or a plain JWKS (all its keys). It returns
// ErrInvalidBundle if the file holds neither or no keys.
func LoadJWTBundle(td spiffeid.TrustDomain, path string) (*jwtbundle.Bundle, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("spiffe: read JWT bundle: %w", err)
	}
	var b *jwtbundle.Bundle
	if sb, err := spiffebundle.Parse(td, data); err == nil && len(sb.JWTAuthorities()) > 0 {
		b = jwtbundle.FromJWTAuthorities(td, sb.JWTAuthorities())
	} else if b, err = jwtbundle.Parse(td, data); err != nil {
		return nil, fmt.Errorf("spiffe: JWT bundle %s: %w: %w", path, ErrInvalidBundle, err)
	}
	if len(b.JWTAuthorities()) == 0 {
		return nil, fmt.Errorf("spiffe: JWT bundle %s: no JWT-SVID keys: %w", path, ErrInvalidBundle)
	}
	return b, nil
}

// statFile returns the stamp of path, or the zero stamp if it cannot be
// read.
func statFile(path string) fileStamp {
	info, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	dev, ino := fileID(info)
	return fileStamp{exists: true, size: info.Size(), mtime: info.ModTime(), dev: dev, ino: ino}
}
