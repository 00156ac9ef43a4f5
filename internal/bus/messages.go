package bus

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
)

// The methods below carry plain messages for parts of amphi other than the
// program, such as the rehearsal tool's remote workers (package load), so
// that they need not know NATS either. Subjects are NATS subjects: dotted
// tokens, with "*" and ">" as wildcards when subscribing.

// Publish sends data on subject. It buffers and does not wait for the
// network; Flush does.
func (b *Bus) Publish(subject string, data []byte) error {
	if err := b.nc.Publish(subject, data); err != nil {
		return fmt.Errorf("bus: publish on %s: %w", subject, err)
	}
	return nil
}

// Subscribe calls fn with every message on subject, on one goroutine, in the
// order they arrive.
func (b *Bus) Subscribe(subject string, fn func(data []byte)) (*Subscription, error) {
	sub, err := b.nc.Subscribe(subject, func(m *nats.Msg) { fn(m.Data) })
	if err != nil {
		return nil, fmt.Errorf("bus: subscribe %s: %w", subject, err)
	}
	return &Subscription{sub: sub}, nil
}

// QueueSubscribe is Subscribe shared by the members of queue: each message
// goes to one of them. fn gets the message's reply subject, empty when the
// sender expects no answer; Publish on it answers a Request.
func (b *Bus) QueueSubscribe(subject, queue string, fn func(data []byte, reply string)) (*Subscription, error) {
	sub, err := b.nc.QueueSubscribe(subject, queue, func(m *nats.Msg) { fn(m.Data, m.Reply) })
	if err != nil {
		return nil, fmt.Errorf("bus: subscribe %s in queue %s: %w", subject, queue, err)
	}
	return &Subscription{sub: sub}, nil
}

// Request sends data on subject and returns the first answer, waiting until
// ctx is done. With no subscriber at all it fails at once.
func (b *Bus) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	m, err := b.nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return nil, fmt.Errorf("bus: request on %s: %w", subject, err)
	}
	return m.Data, nil
}
