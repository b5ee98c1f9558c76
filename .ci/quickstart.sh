#!/usr/bin/env bash
# Builds and runs README.md's quick start as a new user does: a crate of its own, outside the workspace, whose
# Cargo.toml holds exactly the quick start's [dependencies] block (with rpc-core's `path` pointed at this
# checkout) and whose src/main.rs is the quick start's code. Fails if the block or the code is wrong, or if
# rpc-core's front page (the `//!` doc of rpc-core/src/lib.rs) gives another block than the README.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

# The first fenced block of language $1 in the README's "## Quick start" section.
quick_start_block() {
    awk -v fence='```'"$1" '
        /^## / { in_section = ($0 == "## Quick start") }
        in_section && !done && $0 == fence { grab = 1; next }
        grab && $0 == "```" { grab = 0; done = 1; next }
        grab { print }
    ' "$repo/README.md"
}

deps="$(quick_start_block toml)"
code="$(quick_start_block rust)"
[ -n "$code" ] || { echo "quickstart: no \`\`\`rust block in README.md's quick start" >&2; exit 1; }
case "$deps" in
    "[dependencies]"*) ;;
    *) echo "quickstart: README.md's quick start has no \`\`\`toml block starting with [dependencies]" >&2; exit 1 ;;
esac

# rpc-core's front page gives the same block.
front_page="$(awk '
    $0 == "//! ```toml" { grab = 1; next }
    grab && $0 == "//! ```" { exit }
    grab { sub(/^\/\/! ?/, ""); print }
' "$repo/rpc-core/src/lib.rs")"
if [ "$front_page" != "$deps" ]; then
    echo "quickstart: rpc-core/src/lib.rs gives another [dependencies] block than README.md:" >&2
    diff <(echo "$front_page") <(echo "$deps") >&2 || true
    exit 1
fi

# The block names rpc-core by a path; point it at this checkout.
grep -q '^rpc-core = { path = "[^"]*" }' <<<"$deps" || {
    echo "quickstart: the block does not name rpc-core as { path = \"...\" }" >&2
    exit 1
}
deps="$(sed "s|^rpc-core = { path = \"[^\"]*\" }|rpc-core = { path = \"$repo/rpc-core\" }|" <<<"$deps")"

crate="$(mktemp -d)"
trap 'rm -rf "$crate"' EXIT
mkdir "$crate/src"
cat >"$crate/Cargo.toml" <<TOML
[package]
name = "quickstart"
version = "0.1.0"
edition = "2024"
publish = false

$deps
TOML
printf '%s\n' "$code" >"$crate/src/main.rs"
# The workspace's lock file pins the versions it is tested with; cargo drops what this crate does not use.
cp "$repo/Cargo.lock" "$crate/"
echo "quickstart: building and running README.md's quick start in $crate with:"
echo "$deps"
CARGO_TARGET_DIR="$repo/target/quickstart" cargo run --quiet --manifest-path "$crate/Cargo.toml"
echo "quickstart: ok"
