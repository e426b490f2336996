package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
)

// bbolt keeps two meta pages (pages 0 and 1) and uses the valid one with
// the higher transaction ID; each commit writes the older one. Offsets in a
// meta page (bbolt v1.x, native byte order): a 16-byte page header, then
// magic, version, page size, flags (4 bytes each), the root bucket (16),
// freelist and high-water page IDs (8 each), txid (8) and an FNV-64a
// checksum (8) of the meta fields before it.
const (
	metaOffset     = 16
	metaPageSize   = metaOffset + 8
	metaTxID       = metaOffset + 48
	metaChecksum   = metaOffset + 56
	metaMagic      = 0xED0CDAED
	metaHeaderSize = metaChecksum + 8
)

// revertMetaAfter invalidates (zeroes the checksum of) a meta page whose
// transaction ID is above durable: the meta page written by a commit that
// failed. bbolt then opens the file at the other meta page, the last
// durable commit, whose pages the failed commit never overwrote
// (copy-on-write). The change is synced before it returns.
func revertMetaAfter(path string, durable uint64, openFile func(string, int, os.FileMode) (*os.File, error)) (err error) {
	if openFile == nil {
		openFile = os.OpenFile
	}
	f, err := openFile(path, os.O_RDWR, fileMode)
	if err != nil {
		return fmt.Errorf("revert meta page: %w", err)
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	head := make([]byte, metaHeaderSize)
	if _, err := f.ReadAt(head, 0); err != nil {
		return fmt.Errorf("revert meta page: read meta 0: %w", err)
	}
	pageSize := int64(binary.NativeEndian.Uint32(head[metaPageSize:]))
	if binary.NativeEndian.Uint32(head[metaOffset:]) != metaMagic || pageSize < metaHeaderSize {
		// Meta 0 itself may be the damaged one; bbolt's own default.
		pageSize = int64(os.Getpagesize())
	}
	var reverted, valid int
	for _, off := range []int64{0, pageSize} {
		buf := make([]byte, metaHeaderSize)
		if _, err := f.ReadAt(buf, off); err != nil {
			return fmt.Errorf("revert meta page: read meta at %d: %w", off, err)
		}
		if !metaValid(buf) {
			continue
		}
		if binary.NativeEndian.Uint64(buf[metaTxID:]) <= durable {
			valid++
			continue
		}
		if _, err := f.WriteAt(make([]byte, 8), off+metaChecksum); err != nil {
			return fmt.Errorf("revert meta page at %d: %w", off, err)
		}
		reverted++
	}
	if valid == 0 {
		return fmt.Errorf("revert meta page: no meta page at or below durable transaction %d", durable)
	}
	if reverted > 0 {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("revert meta page: sync: %w", err)
		}
	}
	return nil
}

// metaValid checks a meta page's magic and checksum.
func metaValid(buf []byte) bool {
	if binary.NativeEndian.Uint32(buf[metaOffset:]) != metaMagic {
		return false
	}
	h := fnv.New64a()
	_, _ = h.Write(buf[metaOffset:metaChecksum])
	return h.Sum64() == binary.NativeEndian.Uint64(buf[metaChecksum:])
}
