#!/bin/sh
# `make deb`: builds the Debian package from a copy of the tree with
# packaging/debian as its debian/ directory; the .deb lands in build-deb/.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n '1s/.*(\(.*\)).*/\1/p' "$top/packaging/debian/changelog")
out="$top/build-deb"
src="$out/postern-$version"
rm -rf "$out"
mkdir -p "$src"
(cd "$top" && git ls-files -z | xargs -0 cp --parents -t "$src")
cp -r "$top/packaging/debian" "$src/debian"
(cd "$src" && dpkg-buildpackage -us -uc -b)
ls -l "$out"/*.deb
