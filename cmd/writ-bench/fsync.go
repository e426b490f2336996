package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// fsyncResult is the raw durable-write latency of a directory's filesystem.
type fsyncResult struct {
	Dir       string
	Samples   int64
	Fsync     *hdrhistogram.Histogram // µs: 4 KiB pwrite + fsync(2)
	Fdatasync *hdrhistogram.Histogram // µs: 4 KiB pwrite + fdatasync(2), what bbolt calls
}

func (f fsyncResult) String() string {
	return fmt.Sprintf("fsync p50 %s p99 %s, fdatasync p50 %s p99 %s (%d samples each, 4 KiB pwrite + sync, %s)",
		fmtUS(f.Fsync.ValueAtQuantile(50)), fmtUS(f.Fsync.ValueAtQuantile(99)),
		fmtUS(f.Fdatasync.ValueAtQuantile(50)), fmtUS(f.Fdatasync.ValueAtQuantile(99)), f.Samples, f.Dir)
}

// measureFsync times a loop of 4 KiB writes, each followed alternately by
// fsync and fdatasync, into a preallocated 1 MiB file in dir: n samples of
// each, or as many as fit in d.
func measureFsync(ctx context.Context, dir string, n int, d time.Duration) (fsyncResult, error) {
	res := fsyncResult{Dir: dir, Fsync: newHist(), Fdatasync: newHist()}
	f, err := os.CreateTemp(dir, "fsync-*.bin")
	if err != nil {
		return res, fmt.Errorf("fsync baseline: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	const fileSize, block = 1 << 20, 4 << 10
	if err := f.Truncate(fileSize); err != nil {
		return res, fmt.Errorf("fsync baseline: %w", err)
	}
	if err := f.Sync(); err != nil {
		return res, fmt.Errorf("fsync baseline: %w", err)
	}
	buf := make([]byte, block)
	deadline := time.Now().Add(d)
	for i := 0; i < 2*n && time.Now().Before(deadline) && ctx.Err() == nil; i++ {
		buf[0] = byte(i)
		off := int64(i%(fileSize/block)) * block
		start := time.Now()
		if _, err := f.WriteAt(buf, off); err != nil {
			return res, fmt.Errorf("fsync baseline: write %s: %w", filepath.Base(f.Name()), err)
		}
		h := res.Fsync
		if i%2 == 0 {
			err = f.Sync()
		} else {
			h = res.Fdatasync
			err = fdatasync(f)
		}
		if err != nil {
			return res, fmt.Errorf("fsync baseline: sync: %w", err)
		}
		_ = h.RecordValue(max(time.Since(start).Microseconds(), histMin))
	}
	res.Samples = res.Fdatasync.TotalCount()
	return res, nil
}
