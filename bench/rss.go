package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// MinorFaults returns the host page faults the process has taken so far
// that needed no I/O (getrusage ru_minflt): in khosim, first touches of
// host memory, which physical memory never costs.
func MinorFaults() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Minflt
}

// PeakRSS returns the process's peak resident set size in bytes: VmHWM of
// /proc/self/status (Linux only).
func PeakRSS() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	return parseStatusKB(b, "VmHWM")
}

// CurrentRSS returns the process's resident set size in bytes (VmRSS).
func CurrentRSS() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	return parseStatusKB(b, "VmRSS")
}

// ResetPeakRSS resets VmHWM to the current RSS (writing 5 to
// /proc/self/clear_refs, Linux 4.0+), so that the next PeakRSS is the peak
// from now on. It fails where /proc is read-only; PeakRSS then keeps
// reporting the peak since the process started.
func ResetPeakRSS() error {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// parseStatusKB returns the value of a "Key:   123 kB" line of
// /proc/<pid>/status, in bytes.
func parseStatusKB(status []byte, key string) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != key {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("/proc/self/status: malformed %s line %q", key, sc.Text())
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/self/status: %s: %w", key, err)
		}
		return n * KiB, nil
	}
	return 0, fmt.Errorf("/proc/self/status: no %s line", key)
}
