package activity

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/egressd/egressd/internal/events"
)

// Core returns a zap core that adds the decision lines written through it
// to r. Tee it with the log's core.
func (r *Record) Core() zapcore.Core { return &core{r: r} }

type core struct {
	r      *Record
	fields []zapcore.Field
}

func (c *core) Enabled(l zapcore.Level) bool { return l >= zapcore.InfoLevel }

func (c *core) With(fs []zapcore.Field) zapcore.Core {
	return &core{r: c.r, fields: append(append([]zapcore.Field(nil), c.fields...), fs...)}
}

func (c *core) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if events.IsDecision(e.Message) && c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

// Write reads the fields the record needs straight from the zap fields:
// no encoding on the data path.
func (c *core) Write(e zapcore.Entry, fs []zapcore.Field) error {
	l := Line{Msg: e.Message}
	for _, set := range [][]zapcore.Field{c.fields, fs} {
		for _, f := range set {
			if lineKeys[f.Key] {
				l.set(f.Key, fieldValue(f))
			}
		}
	}
	c.r.Add(l)
	return nil
}

func (c *core) Sync() error { return nil }

// fieldValue is f's value as its JSON log line shows it, for the kinds of
// field decision lines carry (strings, stringers, integers).
func fieldValue(f zapcore.Field) any {
	switch f.Type {
	case zapcore.StringType:
		return f.String
	case zapcore.StringerType:
		if s, ok := f.Interface.(fmt.Stringer); ok {
			return s.String()
		}
	case zapcore.Uint64Type, zapcore.Int64Type:
		return float64(f.Integer)
	}
	return nil
}

// lineKeys are the log fields a Line holds.
var lineKeys = map[string]bool{"sandbox": true, "name": true, "dst": true, "proto": true, "verdict": true,
	"reason": true, "rcode": true, "packets": true}

// set stores a log field the record reads.
func (l *Line) set(k string, v any) {
	s, _ := v.(string)
	switch k {
	case "sandbox":
		l.Sandbox = s
	case "name":
		l.Name = s
	case "dst":
		l.Dst = s
	case "proto":
		l.Proto = s
	case "verdict":
		l.Verdict = s
	case "reason":
		l.Reason = s
	case "rcode":
		l.Rcode = s
	case "packets":
		if n, ok := v.(float64); ok && n > 0 {
			l.Packets = uint64(n)
		}
	}
}

// maxLogLine bounds one line of a log file.
const maxLogLine = 1 << 20

// ReadLog builds sandbox's Activity from an egressd log (its JSON lines,
// as written to stderr or the journal's message field); other lines are
// skipped.
func ReadLog(in io.Reader, sandbox string) (Activity, error) {
	r := NewRecord()
	var first time.Time
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), maxLogLine)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		msg, _ := m["msg"].(string)
		if !events.IsDecision(msg) {
			continue
		}
		l := Line{Msg: msg}
		for k, v := range m {
			l.set(k, v)
		}
		if l.Sandbox != sandbox {
			continue
		}
		if first.IsZero() {
			first = logTime(m["ts"])
		}
		r.Add(l)
	}
	if err := sc.Err(); err != nil {
		return Activity{}, fmt.Errorf("read log: %w", err)
	}
	a, _ := r.Activity(sandbox)
	a.Since = first
	return a, nil
}

// logTime reads a log line's ts: ISO 8601 as egressd writes it
// (zapcore.ISO8601TimeEncoder), or RFC 3339.
func logTime(v any) time.Time {
	s, _ := v.(string)
	for _, layout := range []string{"2006-01-02T15:04:05.000Z0700", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return time.Time{}
}
