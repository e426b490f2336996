package checkpoint

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/writ-dev/writ/internal/audit"
)

// Paths served by Handler, beside the JWKS.
const (
	PathPrefix      = "/.well-known/writ-ledger/"
	PathCheckpoint  = PathPrefix + "checkpoint"
	PathKey         = PathPrefix + "key"
	PathConsistency = PathPrefix + "consistency"
	PathInclusion   = PathPrefix + "inclusion"
)

// HandlerConfig configures Handler.
type HandlerConfig struct {
	// Tree answers proofs. Required.
	Tree audit.TreeReader
	// Latest returns the newest signed checkpoint, or nil. Required.
	Latest func() []byte
	// VerifierKey is the ledger's verifier key (note text form). Required.
	VerifierKey string
	// Logger receives server-side errors. Default discards.
	Logger *slog.Logger
}

// Handler serves, under PathPrefix, only hashes and signatures, never
// record contents:
//
//	GET checkpoint                 the newest signed checkpoint note (404 if none yet)
//	GET key                        the verifier key, one line
//	GET consistency?old=N&new=M    the consistency proof, one base64 hash per line
//	GET inclusion?seq=N&size=M     the inclusion proof of record N, one base64 hash per line
//
// Proof answers are text/plain; an empty body is a valid empty proof (old =
// new, or a one-record tree). Bad parameters get 400 with a message.
func Handler(cfg HandlerConfig) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathCheckpoint, func(w http.ResponseWriter, _ *http.Request) {
		signed := cfg.Latest()
		if signed == nil {
			http.Error(w, "no checkpoint yet: the ledger is empty or the first checkpoint is not signed yet", http.StatusNotFound)
			return
		}
		writeText(w, signed)
	})
	mux.HandleFunc("GET "+PathKey, func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, []byte(cfg.VerifierKey+"\n"))
	})
	mux.HandleFunc("GET "+PathConsistency, func(w http.ResponseWriter, r *http.Request) {
		old, err1 := intParam(r, "old")
		nw, err2 := intParam(r, "new")
		if err := errors.Join(err1, err2); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p, err := audit.ConsistencyProof(r.Context(), cfg.Tree, old, nw)
		writeProof(r.Context(), w, cfg.Logger, p, err)
	})
	mux.HandleFunc("GET "+PathInclusion, func(w http.ResponseWriter, r *http.Request) {
		seq, err1 := intParam(r, "seq")
		size, err2 := intParam(r, "size")
		if err := errors.Join(err1, err2); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p, err := audit.InclusionProof(r.Context(), cfg.Tree, seq, size)
		writeProof(r.Context(), w, cfg.Logger, p, err)
	})
	return mux
}

func intParam(r *http.Request, name string) (int64, error) {
	vs, ok := r.URL.Query()[name]
	if !ok || len(vs) != 1 {
		return 0, fmt.Errorf("query parameter %s is required, once", name)
	}
	n, err := strconv.ParseInt(vs[0], 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("query parameter %s=%q is not a non-negative integer", name, vs[0])
	}
	return n, nil
}

func writeProof(ctx context.Context, w http.ResponseWriter, log *slog.Logger, p []tlog.Hash, err error) {
	if errors.Is(err, audit.ErrRange) {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err != nil {
		log.ErrorContext(ctx, "ledger proof failed", "error", err)
		http.Error(w, "ledger proof failed", http.StatusInternalServerError)
		return
	}
	writeText(w, FormatProof(p))
}

func writeText(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
}

// FormatProof writes proof hashes one per line in standard base64.
func FormatProof(p []tlog.Hash) []byte {
	var b bytes.Buffer
	for _, h := range p {
		b.WriteString(base64.StdEncoding.EncodeToString(h[:]))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// maxProofHashes bounds a proof: a tree of 2^63 records needs fewer.
const maxProofHashes = 128

// ParseProof reads what FormatProof writes. Errors name the line.
func ParseProof(body []byte) ([]tlog.Hash, error) {
	var out []tlog.Hash
	if len(body) == 0 {
		return out, nil
	}
	if body[len(body)-1] != '\n' {
		return nil, errors.New("proof: no final newline")
	}
	for i, line := range bytes.Split(body[:len(body)-1], []byte("\n")) {
		if i >= maxProofHashes {
			return nil, fmt.Errorf("proof: more than %d hashes", maxProofHashes)
		}
		h, err := base64.StdEncoding.Strict().DecodeString(string(line))
		if err != nil || len(h) != tlog.HashSize {
			return nil, fmt.Errorf("proof line %d: %q is not a %d-byte hash in standard base64", i+1, line, tlog.HashSize)
		}
		out = append(out, tlog.Hash(h))
	}
	return out, nil
}
