//go:build !unix

package spiffe

import "os"

// fileID returns zeros where the inode is not available; size and
// modification time still detect changes.
func fileID(os.FileInfo) (dev, ino uint64) { return 0, 0 }
