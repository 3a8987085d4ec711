package bench

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Byte units.
const (
	KiB = 1 << 10
	MiB = 1 << 20
	GiB = 1 << 30
)

// SizeAlign is what every measured size must be a multiple of: one folio
// of the largest order measured (PMD order, 2 MiB), so that the memfd is
// the same bytes at every order.
const SizeAlign = 2 * MiB

// MaxOrder is the largest folio order shmem gives a memfd (HPAGE_PMD_ORDER,
// with shmem_enabled=always).
const MaxOrder = 9

// DefaultSizes and DefaultOrders are what `khosim bench` measures without
// --sizes and --orders.
var (
	DefaultSizes  = []uint64{64 * MiB, 256 * MiB, 1 * GiB, 4 * GiB}
	DefaultOrders = []int{0, MaxOrder}
)

// ParseSize parses a byte count: a decimal integer with an optional binary
// unit, K/KiB, M/MiB, G/GiB or T/TiB (case-insensitive; a plain number is
// bytes). "64MiB", "1g" and "4294967296" are sizes.
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	num := strings.TrimRightFunc(t, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.ToLower(strings.TrimSpace(t[len(num):]))
	if num == "" {
		return 0, fmt.Errorf("size %q: no number", s)
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	var mul uint64
	switch unit {
	case "", "b":
		mul = 1
	case "k", "kib", "kb":
		mul = KiB
	case "m", "mib", "mb":
		mul = MiB
	case "g", "gib", "gb":
		mul = GiB
	case "t", "tib", "tb":
		mul = 1 << 40
	default:
		return 0, fmt.Errorf("size %q: unknown unit %q (use KiB, MiB, GiB or TiB)", s, unit)
	}
	if n > math.MaxUint64/mul {
		return 0, fmt.Errorf("size %q overflows", s)
	}
	return n * mul, nil
}

// ParseSizes parses a comma-separated list of sizes for --sizes. Each must
// be a non-zero multiple of SizeAlign (2 MiB).
func ParseSizes(s string) ([]uint64, error) {
	var out []uint64
	for _, f := range strings.Split(s, ",") {
		if strings.TrimSpace(f) == "" {
			return nil, fmt.Errorf("--sizes %q: empty entry", s)
		}
		n, err := ParseSize(f)
		if err != nil {
			return nil, err
		}
		if n == 0 || n%SizeAlign != 0 {
			return nil, fmt.Errorf("size %q: must be a non-zero multiple of 2 MiB", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// ParseOrders parses a comma-separated list of folio orders for --orders:
// 0 (4 KiB pages, shmem_enabled=never) or 9 (2 MiB folios,
// shmem_enabled=always), the two a shmem memfd can have.
func ParseOrders(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		o, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("--orders %q: %q is not a number", s, f)
		}
		if o != 0 && o != MaxOrder {
			return nil, fmt.Errorf("folio order %d: shmem memfds have order 0 or %d", o, MaxOrder)
		}
		out = append(out, o)
	}
	return out, nil
}

// FormatSize prints a byte count in the largest binary unit that divides
// it ("64MiB", "4GiB", "3000B").
func FormatSize(n uint64) string {
	switch {
	case n == 0:
		return "0B"
	case n%GiB == 0:
		return fmt.Sprintf("%dGiB", n/GiB)
	case n%MiB == 0:
		return fmt.Sprintf("%dMiB", n/MiB)
	case n%KiB == 0:
		return fmt.Sprintf("%dKiB", n/KiB)
	}
	return fmt.Sprintf("%dB", n)
}

// humanBytes prints a byte count with one decimal in a binary unit, for
// figures that are not round ("6.3MiB").
func humanBytes(n float64) string {
	switch {
	case n >= GiB:
		return fmt.Sprintf("%.2fGiB", n/GiB)
	case n >= MiB:
		return fmt.Sprintf("%.1fMiB", n/MiB)
	case n >= KiB:
		return fmt.Sprintf("%.1fKiB", n/KiB)
	}
	return fmt.Sprintf("%.0fB", n)
}
