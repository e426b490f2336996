//go:build !linux

package main

import (
	"os"
	"time"
)

// The tool targets Linux; elsewhere it builds, with coarser sleeps, fsync
// in place of fdatasync and no CPU accounting.

func sleep(d time.Duration) { time.Sleep(d) }

func fdatasync(f *os.File) error { return f.Sync() }

func selfCPU() time.Duration { return -1 }
