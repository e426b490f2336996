package main

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
	"time"
)

// usage is a snapshot of process counters. Fields that could not be read
// are -1 in a delta (see sub).
type usage struct {
	// CPU is user+system time of this process (client and broker
	// together), or -1.
	CPU time.Duration
	// PeerCPU is user+system time of a helper process (Vault), or -1.
	PeerCPU time.Duration
	// WriteBytes is bytes this process caused to be sent to storage
	// (/proc/self/io write_bytes), or -1.
	WriteBytes int64
	// WriteCalls is write-like system calls (/proc/self/io syscw), or -1.
	WriteCalls int64
	// Fsyncs is fsync(2)+fdatasync(2) calls counted by perf, or -1.
	Fsyncs int64
}

// sampleUsage reads the counters of this process and, if peerPID > 0, the
// CPU time of process peerPID.
func sampleUsage(peerPID int) usage {
	u := usage{PeerCPU: -1, WriteBytes: -1, WriteCalls: -1, Fsyncs: -1}
	u.CPU = selfCPU()
	if io, err := os.ReadFile("/proc/self/io"); err == nil {
		u.WriteBytes = procField(io, "write_bytes")
		u.WriteCalls = procField(io, "syscw")
	}
	if peerPID > 0 {
		u.PeerCPU = procCPU(peerPID)
	}
	return u
}

// sub returns u-v, keeping -1 for counters missing from either.
func (u usage) sub(v usage) usage {
	d := func(a, b int64) int64 {
		if a < 0 || b < 0 {
			return -1
		}
		return a - b
	}
	return usage{
		CPU:        time.Duration(d(int64(u.CPU), int64(v.CPU))),
		PeerCPU:    time.Duration(d(int64(u.PeerCPU), int64(v.PeerCPU))),
		WriteBytes: d(u.WriteBytes, v.WriteBytes),
		WriteCalls: d(u.WriteCalls, v.WriteCalls),
		Fsyncs:     -1,
	}
}

// procField returns the value of "name: N" in a /proc key-value file, or -1.
func procField(data []byte, name string) int64 {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && k == name {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// userHZ is the unit of utime and stime in /proc/<pid>/stat. It is 100 on
// every Linux architecture Go supports.
const userHZ = 100

// procCPU returns utime+stime of pid from /proc/<pid>/stat, or -1.
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	// The command name (field 2) may contain spaces; fields after the
	// closing parenthesis start at field 3.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return -1
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	st, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return -1
	}
	return time.Duration(ut+st) * time.Second / userHZ
}
