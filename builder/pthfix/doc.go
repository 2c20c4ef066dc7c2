// Package pthfix rewrites the absolute paths that developers' tools leave in
// .pth and .egg-link files of a Silver Lining app.
//
// An app carries its Python libraries in the repo under lib/python/ (or a
// virtualenv-style lib/pythonX.Y/site-packages/). Tools such as
// `pip install -e` write the developer's own paths there, for example
// /home/alice/myapp/src/myapp, which do not exist on the servers. Fix maps
// each absolute entry to the directory of the pushed tree whose path is the
// longest whole-component suffix of it (src/myapp here) and writes it
// relative to the file's directory (../../src/myapp), so the release works
// wherever it is unpacked. The repo itself is never changed; the builder
// applies the result to the release.
//
// Everything Python would not read as a path (blank lines, comments,
// import lines) and every relative entry is left byte for byte as it was,
// line endings included.
package pthfix
