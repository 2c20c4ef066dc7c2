// Package keystore is gitreceive's list of SSH keys allowed to connect and
// what each may do.
//
// The keys live in one human-editable file in OpenSSH authorized_keys line
// format, one key per line. The key's comment is its name, and two options
// carry the permissions:
//
//	# gitreceive keys: one per line, OpenSSH authorized_keys format.
//	# The comment is the key's name; role="admin" or apps="a,b" (deployer) as options.
//	role="admin" ssh-ed25519 AAAAC3Nza... alice
//	role="deployer",apps="myapp,blog" ssh-ed25519 AAAAC3Nza... bob
//
// A line without a role option is a deployer. The file is read on every
// lookup, so edits by the CLI or by hand take effect at once.
package keystore
