package offline

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
)

// A process names itself in the lock files it writes by where it runs and
// when it started: on Linux, the kernel's boot id, its PID namespace, its
// PID and its start time (clock ticks since boot). A process that reads the
// same boot id and namespace runs on the same machine and sees the same
// PIDs, so it can tell that a lock's holder is gone (killed, its lock left
// behind) and take the lock at once, rather than wait for its time to live
// to pass. Where any of it cannot be read, nothing is told: the time to live
// decides, as it does for a holder on another machine.
type process struct {
	boot, pidNS string
	pid         int
	start       string
}

// processLine starts the line of a lock file that names its process.
const processLine = "process "

// self is this process, or a zero process where it cannot be told.
var self = sync.OnceValue(func() process {
	boot, err1 := os.ReadFile("/proc/sys/kernel/random/boot_id")
	ns, err2 := os.Readlink("/proc/self/ns/pid")
	start, err3 := startTime(os.Getpid())
	if err := errors.Join(err1, err2, err3); err != nil {
		return process{}
	}
	return process{boot: strings.TrimSpace(string(boot)), pidNS: ns, pid: os.Getpid(), start: start}
})

// String is the process's line of a lock file, empty for a zero process.
func (p process) String() string {
	if p.boot == "" {
		return ""
	}
	return fmt.Sprintf("%sboot=%s pidns=%s pid=%d start=%s", processLine, p.boot, p.pidNS, p.pid, p.start)
}

// holderProcess is the process a lock file's text names, if it names one.
func holderProcess(text string) (process, bool) {
	for line := range strings.Lines(text) {
		fields, ok := strings.CutPrefix(strings.TrimSpace(line), processLine)
		if !ok {
			continue
		}
		var p process
		for f := range strings.FieldsSeq(fields) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "boot":
				p.boot = v
			case "pidns":
				p.pidNS = v
			case "pid":
				p.pid, _ = strconv.Atoi(v)
			case "start":
				p.start = v
			}
		}
		return p, p.boot != "" && p.pidNS != "" && p.pid > 0 && p.start != ""
	}
	return process{}, false
}

// gone reports whether p is known to have exited: it ran on this machine
// since its last boot, in this PID namespace, and no process of its PID and
// start time runs now.
func (p process) gone() bool {
	me := self()
	if me.boot == "" || p.boot != me.boot || p.pidNS != me.pidNS {
		return false
	}
	start, err := startTime(p.pid)
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	return err == nil && start != p.start
}

// startTime is a process's start time, in clock ticks since boot: the 22nd
// field of /proc/<pid>/stat, the 20th after its name (which may hold spaces
// and parentheses, so the fields are counted from the last parenthesis).
func startTime(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", fmt.Errorf("/proc/%d/stat: no process name", pid)
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return "", fmt.Errorf("/proc/%d/stat: %d fields after the name, want at least 20", pid, len(fields))
	}
	return fields[19], nil
}
