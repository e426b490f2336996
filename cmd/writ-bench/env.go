package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// environment describes the machine a run measured.
type environment struct {
	Date       time.Time
	Command    string
	GoVersion  string
	GOMAXPROCS int
	NumCPU     int
	CPUModel   string
	CPUQuota   string
	Kernel     string
	Dir        string
	FS         string
	LoadAvg    string
	Fsync      fsyncResult
	Vault      string
}

// collectEnvironment reads what can be read cheaply; missing facts are
// reported as "unknown" rather than failing the run.
func collectEnvironment(args []string, dir string) environment {
	return environment{
		Date:       time.Now().UTC(),
		Command:    commandLine(args),
		GoVersion:  runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		NumCPU:     runtime.NumCPU(),
		CPUModel:   cpuModel(),
		CPUQuota:   cpuQuota(),
		Kernel:     readTrim("/proc/sys/kernel/osrelease"),
		Dir:        dir,
		FS:         filesystemOf(dir),
		LoadAvg:    loadAvg(),
		Vault:      "not run",
	}
}

// commandLine renders the invocation so it can be pasted into a shell. A
// binary built by "go run" (in a go-build temporary directory) is shown as
// "go run ./cmd/writ-bench".
func commandLine(args []string) string {
	prog := "go run ./cmd/writ-bench"
	if exe := os.Args[0]; !strings.Contains(exe, "go-build") {
		prog = exe
	}
	parts := []string{prog}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$*?&|;<>()") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// cpuModel returns the first "model name" in /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// cpuQuota reports a cgroup CPU limit (v2 cpu.max or v1 CFS quota).
func cpuQuota() string {
	if s := readTrim("/sys/fs/cgroup/cpu.max"); s != "unknown" {
		return "cgroup v2 cpu.max " + s
	}
	q, p := readTrim("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), readTrim("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
	if q == "unknown" {
		return "unknown"
	}
	if q == "-1" {
		return "none (cgroup v1 cfs_quota_us -1)"
	}
	qn, err1 := strconv.ParseFloat(q, 64)
	pn, err2 := strconv.ParseFloat(p, 64)
	if err1 != nil || err2 != nil || pn == 0 {
		return "cgroup v1 cfs_quota_us " + q + " / " + p
	}
	return fmt.Sprintf("%.2f CPUs (cgroup v1 cfs_quota_us %s / %s)", qn/pn, q, p)
}

// filesystemOf returns the type, device and options of the mount holding
// dir, from the longest matching mount point in /proc/mounts.
func filesystemOf(dir string) string {
	abs, err := filepath.EvalSymlinks(dir)
	if err != nil {
		abs = dir
	}
	data, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return "unknown"
	}
	best, bestLen := "unknown", -1
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		mp := f[1]
		if (abs == mp || strings.HasPrefix(abs, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > bestLen {
			best, bestLen = fmt.Sprintf("%s on %s (%s, %s)", f[2], mp, f[0], f[3]), len(mp)
		}
	}
	return best
}

// loadAvg returns the 1, 5 and 15-minute load averages.
func loadAvg() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
