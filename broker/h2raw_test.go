package broker_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"sync"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2conn is a raw HTTP/2 client connection for attacks a well-behaved gRPC
// client never makes: rapid reset, more streams than allowed, huge headers.
type h2conn struct {
	conn *tls.Conn
	fr   *http2.Framer

	wmu sync.Mutex // serializes writes; the reader goroutine acks settings
	enc *hpack.Encoder
	buf bytes.Buffer

	mu     sync.Mutex
	rst    map[http2.ErrCode]int
	goaway bool
	done   chan struct{} // closed when the server ends the connection
}

// dialH2 opens TLS with cfg (ALPN h2), sends the client preface and
// settings, and starts reading the server's frames.
func dialH2(addr string, cfg *tls.Config) (*h2conn, error) {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		conn.Close()
		return nil, err
	}
	h := &h2conn{conn: conn, fr: http2.NewFramer(conn, conn), rst: map[http2.ErrCode]int{}, done: make(chan struct{})}
	h.enc = hpack.NewEncoder(&h.buf)
	h.fr.MaxHeaderListSize = 1 << 20
	if err := h.fr.WriteSettings(); err != nil {
		conn.Close()
		return nil, err
	}
	go h.read()
	return h, nil
}

func (h *h2conn) read() {
	defer close(h.done)
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				h.wmu.Lock()
				_ = h.fr.WriteSettingsAck()
				h.wmu.Unlock()
			}
		case *http2.RSTStreamFrame:
			h.mu.Lock()
			h.rst[f.ErrCode]++
			h.mu.Unlock()
		case *http2.GoAwayFrame:
			h.mu.Lock()
			h.goaway = true
			h.mu.Unlock()
		}
	}
}

// open sends a HEADERS block (split into CONTINUATION frames as needed)
// for a gRPC call to path on stream id, without ending the stream.
func (h *h2conn) open(id uint32, path string, extra ...hpack.HeaderField) error {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	h.buf.Reset()
	fields := append([]hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "https"}, {Name: ":path", Value: path},
		{Name: ":authority", Value: "writd"}, {Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
	}, extra...)
	for _, f := range fields {
		if err := h.enc.WriteField(f); err != nil {
			return err
		}
	}
	block := h.buf.Bytes()
	const chunk = 16 << 10
	first := block[:min(chunk, len(block))]
	rest := block[len(first):]
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndHeaders: len(rest) == 0}); err != nil {
		return err
	}
	for len(rest) > 0 {
		n := min(chunk, len(rest))
		if err := h.fr.WriteContinuation(id, n == len(rest), rest[:n]); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

// reset cancels stream id.
func (h *h2conn) reset(id uint32) error {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	return h.fr.WriteRSTStream(id, http2.ErrCodeCancel)
}

// resets returns how many streams the server reset with code.
func (h *h2conn) resets(code http2.ErrCode) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rst[code]
}

func (h *h2conn) Close() error {
	err := h.conn.Close()
	<-h.done
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
