// Package packaging holds no Go code of the receiver: it is the home of the Debian package's
// sources (debian/: the unit, the man page, the maintainer scripts), the scripts `make deb` runs
// (build-deb.sh, version.sh), and their tests (the package's contents, lint and an install,
// upgrade, remove and purge by dpkg into a throwaway root).
package packaging
