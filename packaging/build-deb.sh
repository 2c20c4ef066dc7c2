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
install -m 0644 "$src/copyright" "$doc/copyright"
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
