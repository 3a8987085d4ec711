#!/usr/bin/env bash
# Planted bugs: applies, one at a time, deliberate mutations to a scratch
# copy of the tree, builds khosim there and runs `khosim fuzz` against
# each; prints whether it was found and the size of the reduced scenario.
# Usage: scripts/planted.sh [FUZZ_TIME [REDUCE_TIME [JOBS]]]   (default 120s 60s 1)
# Results are summarised in docs/fuzzing.md.
set -uo pipefail
cd "$(dirname "$0")/.."
T=${1:-120s}; R=${2:-60s}; J=${3:-1}
root=$(mktemp -d /tmp/khosim-planted.XXXXXX)
echo "scratch: $root"

# name|file|perl substitution (applied with perl -0pi; must change the file)
muts=(
'skip-page|preserve/memfd_incoming.go|s{(\t\tin\.next = i \+ 1 // this folio is the file.s now, or freed below\n)}{$1\t\tif i == 1 {\n\t\t\tk.MM.FolioPut(folio)\n\t\t\tcontinue\n\t\t}\n}'
'drop-seal|preserve/memfd_fdt.go|s{le\.PutUint32\(b, m\.seals\)}{le.PutUint32(b, m.seals&^uapi.F_SEAL_SHRINK)}'
'leak-ref-on-abort|preserve/memfd.go|s{(\t\t\}\n\t\}\n)\tmf\.unpin\(mf\.folios\)\n}{$1}'
'misorder-restore|preserve/memfd_incoming.go|s{k\.ShmemRestoreFolio\(info, folio, fo\.index,}{k.ShmemRestoreFolio(info, folio, fo.index^uint64(1-min(order, 1)),}'
'forget-unfreeze|luo/luo.go|s{\t\t\tfor j := i - 1; j >= 0; j-- \{\n\t\t\t\tl\.outgoing\[j\]\.unfreeze\(\)\n\t\t\t\}\n}{}'
'misdecode-bit|kexec/bitmap.go|s{(word = b\[w\]\n\t\}\n\treturn w<<6 \+ uint64\(bits\.TrailingZeros64\(word\)\))}{$1 + w&1}'
'truncate-fdt-prop|preserve/memfd_fdt.go|s{\t\tb, err := w\.PropertyPlaceholder\(name, n\)\n(.*?)\t\tfill\(b\)\n}{\t\tcut := 0\n\t\tif name == "flags" && n > 1 {\n\t\t\tcut = 1\n\t\t}\n\t\tb, err := w.PropertyPlaceholder(name, n-cut)\n$1\t\tfull := make([]byte, n)\n\t\tfill(full)\n\t\tcopy(b, full)\n}s'
'fault-cleanup|preserve/memfd_incoming.go|s{\t\t\tfile\.Put\(\)\n(\t\t\treturn nil, fmt\.Errorf\("shmem: failed to claim folio)}{$1}'
)

run_one() {
  local spec=$1 name file sub dir
  IFS='|' read -r name file sub <<<"$spec"
  dir=$root/$name
  mkdir -p "$dir" && tar --exclude=.git -cf - . | tar -xf - -C "$dir"
  cp "$dir/$file" "$dir/$file.orig"
  perl -0pi -e "$sub" "$dir/$file"
  if cmp -s "$dir/$file" "$dir/$file.orig"; then echo "$name: MUTATION DID NOT APPLY"; return; fi
  rm "$dir/$file.orig"
  if ! (cd "$dir" && go build -o khosim ./cmd/khosim) >"$dir/build.log" 2>&1; then echo "$name: BUILD FAILED"; cat "$dir/build.log"; return; fi
  (cd "$dir" && ./khosim fuzz --time "$T" --reduce-time "$R" --out findings >fuzz.out 2>fuzz.err)
  local rc=$? best
  best=$(grep -h -m1 'statements:' "$dir/fuzz.out" | sed 's/^ *//')
  local smallest
  smallest=$(grep -h 'statements:' "$dir/fuzz.out" | sed -E 's/.*seed [0-9]+, ([0-9]+) statements.*/\1/' | sort -n | head -1)
  echo "$name: exit $rc; $(grep -h '^fuzz:' "$dir/fuzz.out" | sed -E 's/;.*(findings? written)/ \1/'); smallest reduced: ${smallest:-none}"
  grep -h 'statements:' "$dir/fuzz.out" | sed 's/^/    /'
}
export -f run_one; export root T R
printf '%s\n' "${muts[@]}" | xargs -d '\n' -P "$J" -I{} bash -c 'run_one "$@"' _ {}
