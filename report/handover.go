package report

import (
	"maps"
	"slices"

	"khosim/fdt"
	"khosim/machine"
)

// handoverOf decodes the handover FDT of m's running kernel: the active
// one, or the one it was handed; nil for neither.
func handoverOf(m *machine.Machine) *Handover {
	p, ok := m.FDTPlacement()
	if !ok {
		return nil
	}
	blob, err := m.HandoverFDT()
	if err != nil {
		return nil
	}
	h := &Handover{Outgoing: p.Outgoing, Addr: uint64(p.Addr), Size: p.Size, RangesByOrder: map[int]int{}}
	if kho := m.KHO(); kho != nil {
		t := kho.Tracker()
		h.Tracker, h.Compatible, h.TrackerDump, h.TrackerFrames = string(t.Name()), t.Compatible(), t.Dump(), t.MetadataFrames()
		if p.Outgoing {
			h.PreservedPages = kho.PreservedPages()
		}
	}
	root, err := fdt.Decode(blob, MaxEntries)
	if err != nil {
		h.Err = err.Error()
		return h
	}
	var walk func(n *fdt.Node)
	walk = func(n *fdt.Node) {
		for i := range n.Props {
			v := &n.Props[i].Value
			if n.Props[i].Name == "mem" && v.Type == fdt.TypeKHOMem {
				h.MemProps++
				h.Ranges += v.Count
				h.RangeBytes += v.MemBytes
				for o, c := range v.MemOrders {
					h.RangesByOrder[o] += c
				}
			}
			// Keep no more of the blob than the report shows.
			v.Raw = slices.Clone(v.Raw[:min(len(v.Raw), 16*MaxEntries)])
			v.MemOrders = maps.Clone(v.MemOrders)
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(root)
	h.Root = root
	return h
}
