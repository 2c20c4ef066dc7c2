// Package appconfig reads an app's app.ini (the Silver Lining format) into a
// typed Config and checks it against the tree that was pushed, so that a push
// with a broken app.ini is refused before anything is built, with every
// problem listed at once and each one saying how to fix it.
//
// Only the [production] section is read. The file is parsed the way Silver
// Lining's Python ConfigParser read it: indented lines continue the value
// above them, and only whole lines starting with # or ; are comments.
package appconfig
