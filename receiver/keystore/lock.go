package keystore

import (
	"fmt"
	"os"
	"syscall"
)

// lockFile takes an exclusive flock on the file at path, creating it if
// needed, and returns the function that releases it. A separate lock file
// is used because the store itself is replaced by rename, and a lock on the
// replaced inode would protect nothing. The lock file is never deleted:
// deleting it would let two processes lock different inodes.
func lockFile(path string) (unlock func(), err error) {
	// os.OpenFile sets O_CLOEXEC, so the lock is not inherited by git or
	// build processes the daemon starts.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, storeFileMode)
	if err != nil {
		return nil, fmt.Errorf("lock key store: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock key store %s: %w", path, err)
	}
	// Closing the descriptor releases the lock.
	return func() { f.Close() }, nil
}
