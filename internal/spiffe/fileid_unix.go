//go:build unix

package spiffe

import (
	"os"
	"syscall"
)

// fileID returns the device and inode of info's file, or zeros if unknown.
func fileID(info os.FileInfo) (dev, ino uint64) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0
	}
	return uint64(st.Dev), uint64(st.Ino) //nolint:unconvert // widths differ across platforms
}
