package broker

import (
	"sync"
)

// RequestChanges tells WatchRequest streams when a request may have changed,
// so they re-read it instead of polling the store. The in-process Hub is the
// default; a backend shared by several replicas (an etcd watch) can
// implement it so that changes made elsewhere wake streams here too.
type RequestChanges interface {
	// Subscribe returns a channel that receives (coalesced, never blocking
	// the sender) after request id may have changed, and a function that
	// ends the subscription.
	Subscribe(id string) (<-chan struct{}, func())
}

// Hub is an in-process RequestChanges: Changed wakes every subscriber of a
// request. The broker signals it on every change its approval service
// makes; watches still re-read the store every Limits.WatchPoll for changes
// it cannot see (another replica's).
type Hub struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
}

// NewHub returns an empty Hub.
func NewHub() *Hub { return &Hub{subs: map[string]map[chan struct{}]struct{}{}} }

// Subscribe implements RequestChanges.
func (h *Hub) Subscribe(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs[id] == nil {
		h.subs[id] = map[chan struct{}]struct{}{}
	}
	h.subs[id][ch] = struct{}{}
	h.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.subs[id], ch)
			if len(h.subs[id]) == 0 {
				delete(h.subs, id)
			}
			h.mu.Unlock()
		})
	}
}

// Changed wakes every subscriber of request id without blocking.
func (h *Hub) Changed(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// subscribers returns how many subscriptions are open (for tests).
func (h *Hub) subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, s := range h.subs {
		n += len(s)
	}
	return n
}
