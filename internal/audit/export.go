package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxExportLine bounds one line of an export file: a stored record.
const MaxExportLine = 1 << 20

// ErrExport is wrapped by errors about an export file's lines (too long, no
// final newline) as opposed to the records in them.
var ErrExport = errors.New("bad export file")

// ExportScanner reads an export file as a Scanner: JSON Lines, one stored
// record per line, byte-identical to the stored bytes (Encode's output),
// oldest first, each line ending in "\n". Each record's key is its "seq"
// field; a line whose seq cannot be read is given the key after the
// previous one, so that Verify reports it (as malformed) at the right
// place. It reads r once.
type ExportScanner struct {
	r    io.Reader
	line int // line number of the record last passed to fn
}

// NewExportScanner returns a Scanner over the export file r.
func NewExportScanner(r io.Reader) *ExportScanner { return &ExportScanner{r: r} }

// Line returns the line number of the record most recently scanned (the
// one that failed, when Verify fails on a record).
func (s *ExportScanner) Line() int { return s.line }

// ScanRecords implements Scanner.
func (s *ExportScanner) ScanRecords(ctx context.Context, fn func(seq uint64, raw []byte) error) error {
	br := bufio.NewReaderSize(s.r, 64<<10)
	var prev uint64
	for n := 1; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		raw, err := readLine(br)
		if errors.Is(err, io.EOF) && raw == nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("export line %d: %w", n, err)
		}
		seq, ok := ParseExportSeq(raw)
		if !ok {
			seq = prev + 1
		}
		s.line, prev = n, seq
		if err := fn(seq, raw); err != nil {
			return err
		}
	}
}

// readLine returns the next line without its "\n", or io.EOF at the end.
// A line longer than MaxExportLine or without a final newline is an error
// wrapping ErrExport.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > MaxExportLine+1 {
			return nil, fmt.Errorf("longer than %d bytes: %w", MaxExportLine, ErrExport)
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) == 0:
			return nil, io.EOF
		case errors.Is(err, io.EOF):
			return nil, fmt.Errorf("no final newline (a cut-off file?): %w", ErrExport)
		default:
			return nil, err
		}
	}
}

// ParseExportSeq returns the "seq" field of an export line, or ok=false if
// the line is not a JSON object with a non-negative integer seq. It does
// not check the rest of the record (Decode does).
func ParseExportSeq(line []byte) (seq uint64, ok bool) {
	if len(line) == 0 || line[0] != '{' || !json.Valid(line) {
		return 0, false
	}
	var r struct {
		Seq *uint64 `json:"seq"`
	}
	if err := json.NewDecoder(bytes.NewReader(line)).Decode(&r); err != nil || r.Seq == nil {
		return 0, false
	}
	return *r.Seq, true
}
