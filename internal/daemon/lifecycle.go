package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// lifecycle holds what New started, in three groups that Shutdown stops in
// this order: servers (listeners; graceful, bounded by the shutdown
// timeout), background jobs (cancelled, then awaited), and closers (stores,
// clients, sources; closed in reverse order of opening). A failed New runs
// the same Shutdown, so nothing it opened outlives it.
type lifecycle struct {
	mu      sync.Mutex
	servers []stopper
	closers []namedCloser

	// serving counts the goroutines running Serve; Shutdown awaits them.
	serving sync.WaitGroup

	// jobCtx is cancelled when Shutdown reaches the background jobs.
	jobCtx   context.Context
	stopJobs context.CancelFunc
	jobs     sync.WaitGroup

	// draining is cancelled when Shutdown begins: open streams end at once
	// instead of holding up the graceful stop.
	draining context.Context
	drain    context.CancelFunc

	// fatal receives the first error a component cannot recover from (a
	// server that stopped by itself, a ledger that can no longer be
	// written); Run then shuts the daemon down and returns it.
	fatal chan error
}

type stopper struct {
	name string
	stop func(ctx context.Context) error
}

type namedCloser struct {
	name  string
	close func() error
}

func newLifecycle(parent context.Context) *lifecycle {
	l := &lifecycle{fatal: make(chan error, 1)}
	l.jobCtx, l.stopJobs = context.WithCancel(context.WithoutCancel(parent))
	l.draining, l.drain = context.WithCancel(context.Background())
	return l
}

// addCloser registers close to run at shutdown, after the servers and
// background jobs have stopped, in reverse order of registration.
func (l *lifecycle) addCloser(name string, close func() error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closers = append(l.closers, namedCloser{name, close})
}

// fail reports an error the daemon cannot continue after; the first one
// wins.
func (l *lifecycle) fail(err error) {
	select {
	case l.fatal <- err:
	default:
	}
}

// goJob runs job in the background until Shutdown cancels its context, and
// Shutdown awaits it. This is where every periodic job of the daemon is
// started (see startJobs).
func (l *lifecycle) goJob(job func(ctx context.Context)) {
	l.jobs.Go(func() { job(l.jobCtx) })
}

// serveGRPC serves gs on lis until Shutdown. If Serve returns by itself the
// daemon fails: a listener that stopped would leave the daemon half up.
func (l *lifecycle) serveGRPC(name string, gs *grpc.Server, lis net.Listener) {
	l.mu.Lock()
	l.servers = append(l.servers, stopper{name, func(ctx context.Context) error {
		done := make(chan struct{})
		go func() { gs.GracefulStop(); close(done) }()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			gs.Stop()
			<-done
			return fmt.Errorf("%s: graceful stop timed out; in-flight calls were cancelled", name)
		}
	}})
	l.mu.Unlock()
	l.serving.Go(func() {
		// Serve returns nil after GracefulStop or Stop.
		if err := gs.Serve(lis); err != nil {
			l.fail(fmt.Errorf("%s server stopped: %w", name, err))
		}
	})
}

// serveHTTP serves hs on lis (with TLS when certFile is set) until
// Shutdown.
func (l *lifecycle) serveHTTP(name string, hs *http.Server, lis net.Listener, certFile, keyFile string) {
	l.mu.Lock()
	l.servers = append(l.servers, stopper{name, func(ctx context.Context) error {
		if err := hs.Shutdown(ctx); err != nil {
			return errors.Join(fmt.Errorf("%s: shutdown: %w", name, err), hs.Close())
		}
		return nil
	}})
	l.mu.Unlock()
	l.serving.Go(func() {
		var err error
		if certFile != "" {
			err = hs.ServeTLS(lis, certFile, keyFile)
		} else {
			err = hs.Serve(lis)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.fail(fmt.Errorf("%s server stopped: %w", name, err))
		}
	})
}

// stop stops the servers (in reverse order of starting; graceful until ctx
// is done), then cancels and awaits the background jobs, then runs the
// closers in reverse. It returns every error met.
func (l *lifecycle) stop(ctx context.Context) error {
	l.drain()
	l.mu.Lock()
	servers, closers := l.servers, l.closers
	l.servers, l.closers = nil, nil
	l.mu.Unlock()

	var errs []error
	for i := len(servers) - 1; i >= 0; i-- {
		if err := servers[i].stop(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	l.serving.Wait()

	l.stopJobs()
	l.jobs.Wait()

	for i := len(closers) - 1; i >= 0; i-- {
		if err := closers[i].close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("close %s: %w", closers[i].name, err))
		}
	}
	return errors.Join(errs...)
}

// errShuttingDown ends streams open when shutdown begins. Unavailable tells
// clients to retry elsewhere or later.
var errShuttingDown = status.Error(codes.Unavailable, "writd is shutting down; reconnect and retry")

// drainStreams ends every open stream (WatchRequest waits for minutes) as
// soon as shutdown begins, so the graceful stop waits only for unary calls
// in flight: their grants are recorded before the ledger closes.
func (l *lifecycle) drainStreams() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if l.draining.Err() != nil {
			return errShuttingDown
		}
		ctx, cancel := context.WithCancel(ss.Context())
		defer cancel()
		stop := context.AfterFunc(l.draining, cancel)
		defer stop()
		err := handler(srv, &drainingStream{ServerStream: ss, ctx: ctx})
		if err != nil && l.draining.Err() != nil && ss.Context().Err() == nil {
			return errShuttingDown
		}
		return err
	}
}

type drainingStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *drainingStream) Context() context.Context { return s.ctx }
