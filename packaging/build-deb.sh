#!/bin/sh
# build-deb.sh BINARY VERSION ARCH OUTDIR: package BINARY (a gitreceive built for ARCH, a Debian
# architecture such as amd64) as OUTDIR/gitreceive_VERSION_ARCH.deb with dpkg-deb alone, and
# print the package's path. `make deb` runs it; so do the package's tests.
#
# The binary is static (built with CGO_ENABLED=0): no libc dependency here, and the receiver
# uploads this same binary to every node as its agent, whatever glibc the node has.
# DEB_MAINTAINER sets the Maintainer field; SOURCE_DATE_EPOCH (the commit's time, from make)
# dates the changelog and the files, so a rebuild of one commit gives the same package.
set -eu
umask 022

if [ $# != 4 ]; then
	echo "usage: build-deb.sh BINARY VERSION ARCH OUTDIR" >&2
	exit 2
fi
binary=$1 version=$2 arch=$3 outdir=$4
here=$(cd "$(dirname "$0")" && pwd)
src="$here/debian"
top="$here/.."
maintainer=${DEB_MAINTAINER:-gitreceive maintainers <gitreceive@users.noreply.github.com>}
epoch=${SOURCE_DATE_EPOCH:-$(date +%s)}
export SOURCE_DATE_EPOCH="$epoch"

case "$version" in
[0-9]*) ;;
*) echo "build-deb.sh: version \"$version\" is not a Debian version: it must start with a digit (see packaging/version.sh and VERSION)" >&2; exit 1 ;;
esac
case "$version" in
*[!0-9A-Za-z.+~]*) echo "build-deb.sh: version \"$version\" is not a Debian version: only digits, letters and . + ~" >&2; exit 1 ;;
esac
case "$arch" in
"" | *[!a-z0-9-]*) echo "build-deb.sh: architecture \"$arch\" is not a Debian architecture (like amd64)" >&2; exit 1 ;;
esac
if [ ! -x "$binary" ]; then
	echo "build-deb.sh: $binary is not an executable (build it first: make deb does)" >&2
	exit 1
fi

# go_module_licenses BINARY prints the copyright file's Go-modules license paragraph: the
# license text of the Go standard library and of every module `go version -m` finds linked into
# BINARY, read from GOROOT and the module cache the binary was built from (no network).
go_module_licenses() {
	command -v go >/dev/null || { echo "build-deb.sh: go is needed to read the licenses of the modules in $1" >&2; return 1; }
	printf '\nLicense: Go-modules\n'
	printf ' The Go standard library and these Go modules are linked into /usr/bin/gitreceive, each\n'
	printf ' under the license it ships, reproduced here.\n'
	goroot=$(go env GOROOT) modcache=$(go env GOMODCACHE)
	license_text "Go standard library $(go version -m "$1" | sed -n '1s/^[^:]*: //p')" "$goroot/LICENSE"
	go version -m "$1" | awk '$1 == "dep" { print $2, $3 }' | while read -r mod ver; do
		# The module cache spells capital letters as !lower.
		dir="$modcache/$(printf '%s' "$mod" | sed 's/[A-Z]/!\L&/g')@$ver"
		files=$(find "$dir" -maxdepth 1 -type f \( -iname 'LICENSE*' -o -iname 'COPYING*' -o -iname 'LICENCE*' \
			-o -iname 'NOTICE*' \) 2>/dev/null | LC_ALL=C sort)
		if [ -z "$files" ]; then
			echo "build-deb.sh: no license file for Go module $mod $ver in $dir (run go mod download)" >&2
			return 1
		fi
		for file in $files; do
			license_text "$mod $ver" "$file"
		done
	done
}

# license_text TITLE FILE prints FILE as part of a DEP-5 license paragraph, under TITLE. The
# Apache 2.0 and MPL 2.0 texts are in every Debian system's /usr/share/common-licenses, and
# Debian policy (12.5) has the copyright file point there instead of repeating them.
license_text() {
	printf ' .\n ==== %s (%s) ====\n .\n' "$1" "$(basename "$2")"
	if head -n 5 "$2" | grep -q 'Apache License' && head -n 5 "$2" | grep -q 'Version 2\.0'; then
		printf ' Apache License 2.0: /usr/share/common-licenses/Apache-2.0\n'
	elif head -n 3 "$2" | grep -q 'Mozilla Public License Version 2\.0'; then
		printf ' Mozilla Public License 2.0: /usr/share/common-licenses/MPL-2.0\n'
	else
		sed -e 's/[[:space:]]*$//' -e 's/^$/./' -e 's/^/ /' "$2"
	fi
}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"
root="$stage/root"
doc="$root/usr/share/doc/gitreceive"
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" \
	"$root/usr/share/man/man8" "$doc" "$root/usr/share/lintian/overrides"

install -m 0755 "$binary" "$root/usr/bin/gitreceive"
install -m 0644 "$src/gitreceive.service" "$root/lib/systemd/system/gitreceive.service"
sed "s/@VERSION@/$version/" "$src/gitreceive.8" | gzip -9n > "$root/usr/share/man/man8/gitreceive.8.gz"
{
	cat "$src/copyright"
	go_module_licenses "$binary"
} > "$doc/copyright"
chmod 0644 "$doc/copyright"
install -m 0644 "$src/lintian-overrides" "$root/usr/share/lintian/overrides/gitreceive"
gzip -9n < "$top/README.md" > "$doc/README.md.gz"
# A native package's changelog: one entry, this build.
{
	printf 'gitreceive (%s) unstable; urgency=medium\n\n' "$version"
	printf '  * Built from the gitreceive source tree at version %s.\n\n' "$version"
	printf ' -- %s  %s\n' "$maintainer" "$(LC_ALL=C date -u -R -d "@$epoch")"
} | gzip -9n > "$doc/changelog.gz"
chmod 0644 "$root/usr/share/man/man8/gitreceive.8.gz" "$doc/README.md.gz" "$doc/changelog.gz"

for script in postinst prerm postrm; do
	install -m 0755 "$src/$script" "$root/DEBIAN/$script"
done
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$size/" \
	-e "s/@DEPENDS@/git/" -e "s|@MAINTAINER@|$maintainer|" \
	"$src/control.in" > "$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
	xargs -0 md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
find "$root" -newermt "@$epoch" -exec touch -h -d "@$epoch" {} +

mkdir -p "$outdir"
deb="$outdir/gitreceive_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
