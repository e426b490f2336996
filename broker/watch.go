package broker

import "sync"

// watchHub wakes WatchRequest streams when a request changes through this
// broker. Streams also poll the store, so changes made by another replica
// are seen too, only later.
type watchHub struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
}

func newWatchHub() *watchHub { return &watchHub{subs: map[string]map[chan struct{}]struct{}{}} }

// subscribe returns a channel that receives when request id changes, and a
// function to unsubscribe.
func (h *watchHub) subscribe(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs[id] == nil {
		h.subs[id] = map[chan struct{}]struct{}{}
	}
	h.subs[id][ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs[id], ch)
		if len(h.subs[id]) == 0 {
			delete(h.subs, id)
		}
		h.mu.Unlock()
	}
}

// changed wakes every watcher of request id without blocking.
func (h *watchHub) changed(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
