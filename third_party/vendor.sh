#!/usr/bin/env bash
# Crates vendored with patches (see README.md here). The vendored tree must always be exactly
# the published crate plus its patch file:
#   third_party/vendor.sh check    verify that (CI runs it)
#   third_party/vendor.sh diff     after editing the vendored tree, rewrite its patch file
#   third_party/vendor.sh reset    start over: the published crate plus the patch file
set -euo pipefail
cd "$(dirname "$0")"

# name version sha256 (of the .crate file, as in crates.io's index)
CRATES=(
    "wasmtime 48.0.8 a2afcadb2e7d0417cb8f3f322c66eff49338b288f22290c0ca0bd3e9570732aa"
)

# The published crate, unpacked into $2 with a git repository holding it as one commit.
pristine() {
    local name=$1 version=$2 sha=$3 dir=$4 file
    file=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$name-$version.crate" 2>/dev/null | head -1 || true)
    if [ -z "$file" ] || ! echo "$sha  $file" | sha256sum --check --status; then
        file="$dir.crate"
        curl -sSfL "https://static.crates.io/crates/$name/$name-$version.crate" -o "$file"
    fi
    echo "$sha  $file" | sha256sum --check --status || { echo "$name $version: checksum mismatch" >&2; exit 1; }
    mkdir -p "$dir"
    tar -xzf "$file" -C "$dir" --strip-components=1
    git -C "$dir" init -q && git -C "$dir" add -A && git -C "$dir" -c user.name=v -c user.email=v@v commit -qm pristine
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
for crate in "${CRATES[@]}"; do
    read -r name version sha <<<"$crate"
    vendored="$name-$version" patch="patches/$name-$version.patch"
    pristine "$name" "$version" "$sha" "$tmp/$name"
    case "${1:-check}" in
        check)
            [ ! -s "$patch" ] || git -C "$tmp/$name" apply "$PWD/$patch"
            if diff -r --exclude=.git "$tmp/$name" "$vendored" >"$tmp/diff"; then
                echo "$vendored: the published crate plus $patch"
            else
                echo "$vendored differs from the published crate plus $patch:" >&2
                head -50 "$tmp/diff" >&2
                status=1
            fi
            ;;
        diff)
            find "$tmp/$name" -mindepth 1 -maxdepth 1 ! -name .git -exec rm -rf {} +
            cp -a "$vendored/." "$tmp/$name/"
            git -C "$tmp/$name" add -A
            git -C "$tmp/$name" diff --cached >"$patch"
            echo "wrote $patch ($(grep -c '^diff --git' "$patch") files)"
            ;;
        reset)
            [ ! -s "$patch" ] || git -C "$tmp/$name" apply "$PWD/$patch"
            rm -rf "$vendored" && mkdir "$vendored"
            (cd "$tmp/$name" && tar --exclude=.git -cf - .) | tar -xf - -C "$vendored"
            echo "$vendored: reset to the published crate plus $patch"
            ;;
        *) echo "usage: $0 [check|diff|reset]" >&2; exit 2 ;;
    esac
done
exit $status
