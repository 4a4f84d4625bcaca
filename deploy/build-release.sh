#!/usr/bin/env bash
# Build a release artifact for `ansible-playbook deploy.yml -e version=<artifact>`: a .tar.gz of
# the repository's files (no .git, nothing git ignores). The file name, minus .tar.gz, becomes
# the release id on the hosts, so give each build its own name.
#
#   deploy/build-release.sh <git ref> [OUT]      a commit, exactly as committed
#   deploy/build-release.sh --worktree [OUT]     the working tree as it is now (tracked files and
#                                                new ones git does not ignore)
#
# deploy.yml can also take a git ref directly (-e version=main): it then runs `git archive`
# itself. Prints the artifact's path.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:?usage: $0 <git ref>|--worktree [OUT]}"
outdir=/tmp/acme-artifacts
mkdir -p "$outdir"

if [ "$what" = --worktree ]; then
  out="${2:-$outdir/acme-worktree-$(date -u +%Y%m%dT%H%M%SZ).tar.gz}"
  git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done |
    tar --create --gzip --file="$out" --null --files-from=- --owner=0 --group=0 --numeric-owner
else
  commit=$(git rev-parse --verify --short=12 "$what^{commit}")
  out="${2:-$outdir/acme-$commit.tar.gz}"
  git archive --format=tar.gz -o "$out" "$commit"
fi
echo "$out"
