#!/usr/bin/env bash
# Alternating A/B of `segcli segment` between an earlier commit and the working tree.
#
#   bench/ab_segment.sh REV [FILE] [ROUNDS]
#   bench/ab_segment.sh 1c947fd bench/data/tx-10M.parquet 4
#
# Checks REV out into a temporary worktree, then runs segment on FILE from it and from this
# tree in turn (ROUNDS times each, same venv, PYTHONPATH picks the tree) under /usr/bin/time,
# printing wall seconds, peak RSS and CPU per run, and whether the two outputs are identical.
set -euo pipefail
rev=${1:?usage: bench/ab_segment.sh REV [FILE] [ROUNDS]}
repo=$(cd "$(dirname "$0")/.." && pwd)
file=$(realpath "${2:-$repo/bench/data/tx-10M.parquet}")
rounds=${3:-4}
py="$repo/.venv/bin/python"
tmp=$(mktemp -d)
trap 'git -C "$repo" worktree remove --force "$tmp/old" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git -C "$repo" worktree add --detach "$tmp/old" "$rev" >/dev/null 2>&1
echo "tree wall_s peak_KiB user_s sys_s load1"
for _ in $(seq "$rounds"); do
  for tree in old new; do
    src=$([ "$tree" = old ] && echo "$tmp/old" || echo "$repo")
    line=$(cd "$tmp" && /usr/bin/time -f "%e %M %U %S" env PYTHONPATH="$src" SOURCE_DATE_EPOCH=1767225600 \
           "$py" -m segcli segment "$file" -o "$tmp/$tree.parquet" --quiet 2>&1 >/dev/null | tail -1)
    echo "$tree $line $(cut -d' ' -f1 /proc/loadavg)"
  done
done
cmp -s "$tmp/old.parquet" "$tmp/new.parquet" && echo "outputs: identical" || echo "outputs: differ"
