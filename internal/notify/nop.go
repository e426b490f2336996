package notify

import "context"

// Nop discards every notification. Use it when no webhook is configured.
type Nop struct{}

// Notify does nothing.
func (Nop) Notify(context.Context, Event) {}

// Close does nothing and returns nil.
func (Nop) Close(context.Context) error { return nil }
