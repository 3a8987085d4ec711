// Package bench measures what a live update through KHO and FDBox costs —
// the blackout (activate, kexec, restore) and the handover metadata — side
// by side, in the same run, with what a user has today: copying the data
// out and back in.
//
// Two front ends share this package:
//
//   - Go benchmarks (go test -bench . ./bench/...): serialize (KHO
//     activate) and restore (kexec until the memfd is back in a process) of
//     one memfd and of many small memfds, and the encoding and decoding of
//     the handover FDT, each reporting ns/page and GiB/s of preserved
//     memory;
//   - `khosim bench`, which runs Measure for every (size, folio order) and
//     prints Rows as a table (WriteTable) or JSON (WriteJSON), with the
//     scaling check and the targets (Summarize).
//
// Wall-clock time is read only to report how long steps took; the
// simulation itself stays deterministic. docs/performance.md explains the
// method, the baseline and the figures.
package bench
