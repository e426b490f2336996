package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// fsyncTracepoints are the system calls counted as fsyncs. bbolt calls
// fdatasync on Linux; the fsync baseline calls fsync.
const fsyncTracepoints = "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync"

// fsyncCounter counts this process's fsync and fdatasync calls with
// "perf stat" attached to it. Counting syscall tracepoints costs a few
// nanoseconds per call; it does not trace or stop the process.
type fsyncCounter struct {
	cmd  *exec.Cmd
	ctl  *os.File
	ack  *bufio.Reader
	ackF *os.File
	out  *lockedBuffer
}

// startFsyncCounter starts perf attached to this process with counting
// enabled, and returns once perf has acknowledged that it is counting.
// It fails if perf is missing or lacks permission for the tracepoints.
func startFsyncCounter() (*fsyncCounter, error) {
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	ackR, ackW, err := os.Pipe()
	if err != nil {
		ctlR.Close()
		ctlW.Close()
		return nil, err
	}
	c := &fsyncCounter{ctl: ctlW, ackF: ackR, ack: bufio.NewReader(ackR), out: &lockedBuffer{}}
	c.cmd = exec.Command("perf", "stat", "-x", ",", "-D", "-1", "--control", "fd:3,4",
		"-e", fsyncTracepoints, "-p", strconv.Itoa(os.Getpid()))
	c.cmd.ExtraFiles = []*os.File{ctlR, ackW}
	c.cmd.Stdout = c.out
	c.cmd.Stderr = c.out
	err = c.cmd.Start()
	ctlR.Close()
	ackW.Close()
	if err != nil {
		ctlW.Close()
		ackR.Close()
		return nil, fmt.Errorf("start perf: %w", err)
	}
	if err := c.command("enable"); err != nil {
		c.kill()
		return nil, fmt.Errorf("perf: %w (output: %s)", err, strings.TrimSpace(c.out.String()))
	}
	return c, nil
}

// command sends cmd to perf and waits for its acknowledgement.
func (c *fsyncCounter) command(cmd string) error {
	if _, err := fmt.Fprintln(c.ctl, cmd); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		line, err := c.ack.ReadString('\n')
		// perf terminates each reply with a NUL after the newline.
		if err == nil && strings.Trim(line, "\x00 \n") != "ack" {
			err = fmt.Errorf("unexpected reply %q", line)
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		return errors.New("no acknowledgement within 10s")
	}
}

// Stop stops counting and returns the number of calls counted.
func (c *fsyncCounter) Stop() (int64, error) {
	if err := c.command("disable"); err != nil {
		c.kill()
		return -1, fmt.Errorf("perf: %w", err)
	}
	_ = c.cmd.Process.Signal(os.Interrupt)
	_ = c.cmd.Wait()
	c.ctl.Close()
	c.ackF.Close()
	return parsePerfCounts(c.out.String())
}

func (c *fsyncCounter) kill() {
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
	c.ctl.Close()
	c.ackF.Close()
}

// parsePerfCounts sums the counts of "perf stat -x ," CSV lines for the
// fsync tracepoints.
func parsePerfCounts(out string) (int64, error) {
	var total int64
	seen := 0
	for line := range strings.Lines(out) {
		f := strings.Split(strings.TrimSpace(line), ",")
		if len(f) < 3 || !strings.HasPrefix(f[2], "syscalls:sys_enter_") {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return -1, fmt.Errorf("perf: %s not counted: %q", f[2], f[0])
		}
		total += n
		seen++
	}
	if seen != 2 {
		return -1, fmt.Errorf("perf: no counts in output %q", strings.TrimSpace(out))
	}
	return total, nil
}

// lockedBuffer is a bytes.Buffer safe for the concurrent writes of exec.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
