package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// ErrBadCheckpoint is returned for a checkpoint that does not parse, whose
// signature does not verify with the ledger's key, or whose origin is not
// the key's name.
var ErrBadCheckpoint = errors.New("bad ledger checkpoint")

// maxCheckpointSize bounds a signed checkpoint note (text and signatures).
const maxCheckpointSize = 16 << 10

// Checkpoint is a signed statement of the ledger's Merkle tree: its first
// Size records have root hash Hash. Its text is the C2SP tlog-checkpoint
// body, the format of the Go checksum database, Sigstore and the
// transparency-dev witnesses:
//
//	<origin>
//	<size, decimal>
//	<root hash, standard base64>
//
// each line ending in a newline. It is signed as a note
// (golang.org/x/mod/sumdb/note) by the ledger's Ed25519 key, whose name is
// the origin.
type Checkpoint struct {
	// Origin names the log. It is also the name of the key that signs it.
	Origin string
	// Size is the number of records the tree covers.
	Size int64
	// Hash is the tree's root hash (RFC 6962).
	Hash tlog.Hash
}

// Text returns the checkpoint body that is signed.
func (c Checkpoint) Text() []byte {
	return fmt.Appendf(nil, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Hash[:]))
}

// ParseCheckpoint parses a checkpoint body (the text of a note, without its
// signatures). Lines after the third (C2SP extension lines) are accepted
// and ignored. Errors name the line and wrap ErrBadCheckpoint.
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	bad := func(line int, format string, args ...any) (Checkpoint, error) {
		return Checkpoint{}, fmt.Errorf("checkpoint line %d: %s: %w", line, fmt.Sprintf(format, args...), ErrBadCheckpoint)
	}
	if len(text) > maxCheckpointSize {
		return Checkpoint{}, fmt.Errorf("checkpoint is %d bytes, more than %d: %w", len(text), maxCheckpointSize, ErrBadCheckpoint)
	}
	if !utf8.Valid(text) {
		return Checkpoint{}, fmt.Errorf("checkpoint is not valid UTF-8: %w", ErrBadCheckpoint)
	}
	lines := strings.SplitAfter(string(text), "\n")
	if len(lines) < 4 { // three lines and what follows the last newline
		return bad(len(lines), "want origin, size and root hash lines, each ending in a newline")
	}
	origin := strings.TrimSuffix(lines[0], "\n")
	if err := checkOrigin(origin); err != nil {
		return bad(1, "origin: %v", err)
	}
	sizeText := strings.TrimSuffix(lines[1], "\n")
	size, err := strconv.ParseInt(sizeText, 10, 64)
	if err != nil || size < 0 || sizeText != strconv.FormatInt(size, 10) {
		return bad(2, "size %q is not a non-negative decimal number", sizeText)
	}
	hashText := strings.TrimSuffix(lines[2], "\n")
	h, err := base64.StdEncoding.Strict().DecodeString(hashText)
	if err != nil || len(h) != tlog.HashSize {
		return bad(3, "root hash %q is not %d bytes in standard base64", hashText, tlog.HashSize)
	}
	c := Checkpoint{Origin: origin, Size: size}
	copy(c.Hash[:], h)
	return c, nil
}

// checkOrigin applies the note package's rules for key names, since the
// origin is the key's name: non-empty UTF-8 without spaces or '+'.
func checkOrigin(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || r == '+' || !unicode.IsPrint(r) }) {
		return fmt.Errorf("%q contains a space, '+' or a control character", s)
	}
	return nil
}

// SignCheckpoint returns c signed as a note by signer, whose name must be
// c.Origin.
func SignCheckpoint(c Checkpoint, signer note.Signer) ([]byte, error) {
	if signer.Name() != c.Origin {
		return nil, fmt.Errorf("sign checkpoint: origin %q is not the key's name %q: %w", c.Origin, signer.Name(), ErrBadCheckpoint)
	}
	if err := checkOrigin(c.Origin); err != nil {
		return nil, fmt.Errorf("sign checkpoint: origin: %w: %w", err, ErrBadCheckpoint)
	}
	msg, err := note.Sign(&note.Note{Text: string(c.Text())}, signer)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	return msg, nil
}

// OpenCheckpoint verifies a signed checkpoint note with verifier and parses
// it. It fails with an error wrapping ErrBadCheckpoint unless the note is
// signed by verifier's key and its origin is the key's name. Signatures by
// other keys are ignored.
func OpenCheckpoint(msg []byte, verifier note.Verifier) (Checkpoint, error) {
	if len(msg) > maxCheckpointSize {
		return Checkpoint{}, fmt.Errorf("checkpoint note is %d bytes, more than %d: %w", len(msg), maxCheckpointSize, ErrBadCheckpoint)
	}
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		if errors.As(err, &unverified) {
			return Checkpoint{}, fmt.Errorf("checkpoint is not signed by the ledger key %s (forged, or signed by another key): %w", verifier.Name(), ErrBadCheckpoint)
		}
		return Checkpoint{}, fmt.Errorf("checkpoint note: %w: %w", err, ErrBadCheckpoint)
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != verifier.Name() {
		return Checkpoint{}, fmt.Errorf("checkpoint origin %q is not the key's name %q: %w", c.Origin, verifier.Name(), ErrBadCheckpoint)
	}
	return c, nil
}

// NoteAt is one note of a checkpoint file and the line it starts on.
type NoteAt struct {
	// Line is the 1-based line number of the note's first line.
	Line int
	// Note is the signed note, text and signature lines.
	Note []byte
}

// SplitNotes splits concatenated signed notes, as a witness's checkpoint
// file holds them: each note's text runs to its blank line, and its
// signature lines (starting "— ") follow; the next line that is not a
// signature starts the next note. Errors name the line (1-based) and wrap
// ErrBadCheckpoint. The notes' signatures are not checked here.
func SplitNotes(data []byte) ([]NoteAt, error) {
	var (
		notes     []NoteAt
		start     int  // offset of the current note
		startLine = 1  // its line number
		line      = 1  // number of the line at offset off
		inSigs    bool // past the current note's blank line
		haveSig   bool // the current note has a signature line
		sigPrefix = []byte("\u2014 ")
	)
	for off := 0; off < len(data); {
		end := bytes.IndexByte(data[off:], '\n')
		if end < 0 {
			return nil, fmt.Errorf("checkpoints line %d: no final newline: %w", line, ErrBadCheckpoint)
		}
		l := data[off : off+end]
		switch {
		case inSigs && bytes.HasPrefix(l, sigPrefix):
			haveSig = true
		case inSigs && !haveSig:
			return nil, fmt.Errorf("checkpoints line %d: want a signature line (\"\u2014 name signature\"): %w", line, ErrBadCheckpoint)
		case inSigs:
			notes = append(notes, NoteAt{Line: startLine, Note: data[start:off]})
			start, startLine, inSigs, haveSig = off, line, false, false
			if len(l) == 0 {
				return nil, fmt.Errorf("checkpoints line %d: blank line where a note should start: %w", line, ErrBadCheckpoint)
			}
		case len(l) == 0:
			if off == start {
				return nil, fmt.Errorf("checkpoints line %d: blank line where a note should start: %w", line, ErrBadCheckpoint)
			}
			inSigs = true
		}
		off += end + 1
		line++
	}
	switch {
	case start == len(data):
	case !haveSig:
		return nil, fmt.Errorf("checkpoints line %d: the note starting at line %d has no signature: %w", line, startLine, ErrBadCheckpoint)
	default:
		notes = append(notes, NoteAt{Line: startLine, Note: data[start:]})
	}
	return notes, nil
}

// GenerateLedgerKey returns a new Ed25519 signer key (secret) and its
// verifier key, in the note package's text forms, named origin.
func GenerateLedgerKey(rand io.Reader, origin string) (skey, vkey string, err error) {
	if err := checkOrigin(origin); err != nil {
		return "", "", fmt.Errorf("ledger key name: %w", err)
	}
	return note.GenerateKey(rand, origin)
}

// VerifierKey returns the verifier key (public, note text form) for an
// Ed25519 signer key as GenerateLedgerKey returns it.
func VerifierKey(skey string) (string, error) {
	// PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>
	parts := strings.SplitN(skey, "+", 5) // base64 may hold "+"
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return "", errors.New("not a note signer key (PRIVATE+KEY+name+hash+key)")
	}
	if _, err := note.NewSigner(skey); err != nil {
		return "", fmt.Errorf("signer key: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(key) != 1+ed25519.SeedSize || key[0] != 1 {
		return "", errors.New("signer key is not an Ed25519 key")
	}
	pub := ed25519.NewKeyFromSeed(key[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(parts[2], pub)
}
