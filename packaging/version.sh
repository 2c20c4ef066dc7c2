#!/bin/sh
# version.sh [DIR]: the version of the gitreceive tree in DIR (default: this script's tree), in a
# form that is both what `gitreceive version` prints and a Debian package version (digits first;
# only [0-9A-Za-z.+~]; later commits sort higher, so a package built from a newer commit upgrades
# an older one):
#
#   on a tag vX.Y.Z                        X.Y.Z
#   N commits after tag vX.Y.Z             X.Y.Z+gitN.HASH
#   no tag: VERSION file says X.Y.Z        X.Y.Z+gitN.HASH   (N: commits since the first)
#   no git (a source tarball)              X.Y.Z             (the VERSION file alone)
#
# and ".dirty" after it when the work tree has uncommitted changes.
set -eu
dir=${1:-$(dirname "$0")/..}
cd "$dir"
base=$(tr -d ' \t\r\n' < VERSION)
case "$base" in
[0-9]*) ;;
*) echo "version.sh: VERSION holds \"$base\": it must start with a digit (like 0.1.0)" >&2; exit 1 ;;
esac
if ! git rev-parse --verify -q HEAD >/dev/null 2>&1; then
	echo "$base"
	exit 0
fi
dirty=""
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	dirty=".dirty"
fi
hash=$(git rev-parse --short=7 HEAD)
tag=""
if tag=$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null); then
	n=$(git rev-list --count "$tag..HEAD")
	base=${tag#v}
else
	n=$(git rev-list --count HEAD)
fi
version=$base
if [ "$n" != 0 ]; then
	version="$base+git$n.$hash"
fi
version="$version$dirty"
case "$version" in
*[!0-9A-Za-z.+~]*) echo "version.sh: \"$version\" is not a Debian version (tag $tag?)" >&2; exit 1 ;;
esac
echo "$version"
