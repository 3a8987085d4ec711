// Package pagecache models the Linux page cache: the XArray that indexes
// it (lib/xarray.c, include/linux/xarray.h) and the address_space that owns
// one (struct address_space in include/linux/fs.h, with the filemap.c and
// shmem.c primitives that store into it).
//
// # XArray
//
// There is no XArray for Go, so this one is hand-written after
// lib/xarray.c: a radix tree of 64-slot nodes (XA_CHUNK_SHIFT = 6) that
// grows in height when an index beyond its reach is stored (xas_expand) and
// shrinks back when the entries that needed the height are erased
// (xas_shrink). Entries are pointer-free uint64 words encoded as Linux
// encodes them:
//
//   - 0 is NULL, the empty entry;
//   - a word with bit 0 set is a value entry (xa_mk_value), e.g. a shmem
//     swap entry or a workingset shadow;
//   - a word with the low two bits 10 is an internal entry (xa_mk_internal):
//     sibling entries and node pointers, which never leave the package;
//   - any other word is a pointer: here always the address of a struct page
//     in the vmemmap, VmemmapStart + pfn*StructPageSize, which is what a
//     struct folio pointer is on x86-64. FolioEntry/Entry.PFN convert.
//
// A multi-index entry of order N covers the 2^N aligned indices
// [index, index+2^N). As in Linux it lives in the node of shift
// N - N%6 and takes 2^(N%6) slots there: the canonical slot holds the entry
// and the others hold sibling entries naming it (xas_set_order,
// xa_mk_sibling). Marks (XA_MARK_0..2) live in per-node bitmaps, only on
// canonical slots, and are propagated to the ancestors so that a marked
// search skips unmarked subtrees.
//
// Nodes live by value in one per-XArray slice, the arena, and a node
// entry names its node by arena index (xa_mk_node() of an index rather
// than an address), so neither entries nor nodes hold Go pointers and the
// garbage collector never scans a tree. Freed nodes are kept on a free
// list and reused, so stores and erases allocate host memory only when
// the tree reaches a new high-water mark of nodes.
//
// What a node costs the simulated machine: with a node cache
// (SetNodeCache: the kernel's radix_tree_node slab cache) every node in
// the tree holds a 576-byte slab object, allocated with the node and freed
// with it, and allocating one can fail. An operation allocates every node
// it needs before it changes anything (nomem.go: xas_nomem,
// xas_split_alloc), so it either succeeds or fails with ENOMEM leaving the
// array as it was. Reserve (xa_reserve) stores XA_ZERO_ENTRY, which loads
// and searches see as empty, so that a later store there needs no node.
//
// There is no RCU and no locking: khosim is single-threaded and
// deterministic. An XArray is not safe for concurrent use and must not be
// copied once used.
//
// # AddressSpace
//
// AddressSpace is struct address_space reduced to what the page cache
// needs: i_pages, the mapping's ID, nrpages and the count of pages held by
// value entries (shmem's swapped count). Folio refcounts, folio locks and
// the memmap belong to the kernel above, which calls the primitives here.
package pagecache
