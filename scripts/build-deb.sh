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
# A module with a package of its own (postern-ldap, postern-pgsql) that the
# tree does not have is left out by its build profile (debian/rules).
profiles=""
for m in ldap pgsql; do
	[ -d "$top/modules/$m" ] || profiles="${profiles:+$profiles,}pkg.postern.no$m"
done
(cd "$src" && dpkg-buildpackage -us -uc -b ${profiles:+-P"$profiles"})
ls -l "$out"/*.deb
