package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture (the kernel converts its own HZ to it).
const clockTick = 10 * time.Millisecond

// procCPU returns the CPU time pid has used, user and system, its waited-for
// children's included (utime + stime + cutime + cstime of /proc/PID/stat);
// 0 for pid 0 (no proxy).
func procCPU(pid int) (time.Duration, error) {
	if pid == 0 {
		return 0, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu: %w", err)
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads fields 14–17 of a /proc/PID/stat line. The command
// name (field 2) is in parentheses and may hold spaces or parentheses, so
// fields are counted from its last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("cpu: no command name in %q", stat)
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return 0, fmt.Errorf("cpu: %d fields after the command name, want ≥ 15", len(f))
	}
	var ticks int64
	for _, s := range f[11:15] { // fields 14..17
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu: parse %q: %w", s, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// cpuMeter measures pid's CPU time over one interval.
type cpuMeter struct {
	pid   int
	start time.Duration
}

func startCPU(pid int) (cpuMeter, error) {
	t, err := procCPU(pid)
	return cpuMeter{pid: pid, start: t}, err
}

// used is the CPU time pid took since startCPU.
func (m cpuMeter) used() (time.Duration, error) {
	t, err := procCPU(m.pid)
	return t - m.start, err
}
