package kexec

import (
	"iter"

	"khosim/physmem"
)

// folioLog is an append-only list of folios in chunks: a DUMP of a 4 GiB
// memfd preserves a million folios one at a time, and a chunked list
// never copies them as a growing slice would.
type folioLog struct {
	chunks [][]physmem.Folio
	n      int
}

// folioLogChunk is the folios per chunk (32 KiB).
const folioLogChunk = 8192

// add appends f.
func (l *folioLog) add(f physmem.Folio) {
	if k := len(l.chunks); k == 0 || len(l.chunks[k-1]) == folioLogChunk {
		l.chunks = append(l.chunks, make([]physmem.Folio, 0, folioLogChunk))
	}
	k := len(l.chunks) - 1
	l.chunks[k] = append(l.chunks[k], f)
	l.n++
}

// all yields the folios in the order they were added.
func (l *folioLog) all() iter.Seq[physmem.Folio] {
	return func(yield func(physmem.Folio) bool) {
		for _, c := range l.chunks {
			for _, f := range c {
				if !yield(f) {
					return
				}
			}
		}
	}
}
