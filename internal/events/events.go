// Package events streams every decision (proxy flows, DNS queries, kernel
// denials) to whoever listens, as the JSON of its log line, without ever
// slowing the data path: a reader that falls behind loses events and is
// told how many.
package events

import (
	"sync"
	"sync/atomic"

	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
)

// decisions are the log messages that are decisions.
var decisions = map[string]bool{
	"flow": true, "flow cut by policy change": true, "flow closed: idle": true,
	"dns query": true, "dns query refused": true, "dns query dropped": true,
	"kernel denied": true, "kernel report-only": true,
}

// IsDecision reports whether a log line with message msg is a decision.
func IsDecision(msg string) bool { return decisions[msg] }

// subBuffer is how many events a reader may be behind before it loses some.
const subBuffer = 4096

// Hub fans decision lines out to subscribers.
type Hub struct {
	mu   sync.Mutex
	subs map[*Sub]struct{}
	n    atomic.Int32 // len(subs), read without the lock on the hot path
}

// NewHub returns a hub with no subscribers.
func NewHub() *Hub { return &Hub{subs: map[*Sub]struct{}{}} }

// Sub is one reader's stream.
type Sub struct {
	C       chan []byte // one JSON object per event
	sandbox string      // "" for all
	dropped atomic.Uint64
}

// Dropped returns and resets the number of events the reader lost.
func (s *Sub) Dropped() uint64 { return s.dropped.Swap(0) }

// Subscribe starts a stream of the events of sandbox ("" for every one).
func (h *Hub) Subscribe(sandbox string) *Sub {
	s := &Sub{C: make(chan []byte, subBuffer), sandbox: sandbox}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.n.Store(int32(len(h.subs)))
	h.mu.Unlock()
	return s
}

// Unsubscribe ends s.
func (h *Hub) Unsubscribe(s *Sub) {
	h.mu.Lock()
	delete(h.subs, s)
	h.n.Store(int32(len(h.subs)))
	h.mu.Unlock()
}

func (h *Hub) publish(sandbox string, line []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if s.sandbox != "" && s.sandbox != sandbox {
			continue
		}
		select {
		case s.C <- line:
		default:
			s.dropped.Add(1)
		}
	}
}

// Core returns a zap core that publishes the decision lines written
// through it, encoded by enc (the log's own encoder config, so events
// carry the log lines' fields), to h's subscribers. Tee it with the log's
// core. It encodes nothing while no one listens.
func (h *Hub) Core(enc zapcore.EncoderConfig) zapcore.Core {
	enc.LineEnding = ""
	return &core{hub: h, enc: zapcore.NewJSONEncoder(enc)}
}

type core struct {
	hub    *Hub
	enc    zapcore.Encoder
	fields []zapcore.Field
}

func (c *core) Enabled(l zapcore.Level) bool { return l >= zapcore.InfoLevel }

func (c *core) With(fs []zapcore.Field) zapcore.Core {
	return &core{hub: c.hub, enc: c.enc, fields: append(append([]zapcore.Field(nil), c.fields...), fs...)}
}

func (c *core) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.hub.n.Load() > 0 && decisions[e.Message] && c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *core) Write(e zapcore.Entry, fs []zapcore.Field) error {
	all := append(append([]zapcore.Field(nil), c.fields...), fs...)
	var buf *buffer.Buffer
	buf, err := c.enc.EncodeEntry(e, all)
	if err != nil {
		return err
	}
	line := append([]byte(nil), buf.Bytes()...)
	buf.Free()
	sandbox := ""
	for _, f := range all {
		if f.Key == "sandbox" && f.Type == zapcore.StringType {
			sandbox = f.String
		}
	}
	c.hub.publish(sandbox, line)
	return nil
}

func (c *core) Sync() error { return nil }
