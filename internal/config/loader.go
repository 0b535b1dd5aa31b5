package config

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"

	"github.com/BurntSushi/toml"

	"github.com/egressd/egressd/policy"
)

// Loader parses the same config file again and again (SIGHUP), decoding
// and validating only the [[sandbox]] tables whose text changed since the
// last parse: at 1,000 sandboxes, a whole parse costs ~60 ms of CPU, one
// table well under one.
//
// The file is cut into its part before the first [[sandbox]] header and
// one piece per header line; each piece is parsed as a TOML document of
// its own. A cut inside a multi-line string or array leaves the piece
// before it unterminated, which fails to parse: anything the pieces cannot
// express exactly (a table after the sandboxes, a sandbox key in the
// first part, any problem at all) falls back to Parse, which also gives
// every error its line. The result is the Config Parse returns.
type Loader struct {
	mu     sync.Mutex
	tables map[string]loadedTable // by the piece's text
	guards string                 // host.sandbox_interfaces the tables were validated with
}

// loadedTable is one piece's sandboxes, decoded and validated.
type loadedTable struct {
	files []fileSandbox
	sbs   []policy.Sandbox
}

// NewLoader returns a Loader with nothing remembered.
func NewLoader() *Loader { return &Loader{} }

// Load reads and parses the config file at path.
func (l *Loader) Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return l.Parse(path, data)
}

// Parse is Parse, reusing the tables the last call decoded.
func (l *Loader) Parse(name string, data []byte) (*Config, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cfg, tables, ok := l.pieces(name, string(data)); ok {
		l.tables = tables
		l.guards = guardsKey(cfg.Host)
		return cfg, nil
	}
	l.tables = nil
	return Parse(name, data)
}

func guardsKey(h Host) string { return strings.Join(h.SandboxInterfaces, "\x00") }

// pieces parses data piece by piece; false when data needs Parse.
func (l *Loader) pieces(name, data string) (*Config, map[string]loadedTable, bool) {
	head, pieces := cutSandboxes(data)
	if len(pieces) == 0 {
		return nil, nil, false
	}
	v := &validator{src: &sourceIndex{}, errs: errorList{file: name}, broken: map[int]bool{}}
	fc := defaultFile()
	top, md, ok := decodePiece(head)
	if _, has := top["sandbox"]; !ok || has {
		return nil, nil, false
	}
	d := decoder{v: v, md: &md}
	if !d.fields(top, "", -1, "", reflect.ValueOf(&fc).Elem()) {
		return nil, nil, false
	}
	cfg := &Config{Path: name, Proxy: v.proxy(fc.Proxy), Admin: v.admin(fc.Admin), State: v.state(fc.State),
		DNS: v.dns(fc.DNS), Host: v.host(fc.Host)}
	if v.errs.err() != nil {
		return nil, nil, false
	}
	old := l.tables
	if l.guards != guardsKey(cfg.Host) {
		old = nil // every sandbox's interface is checked against them
	}
	tables := make(map[string]loadedTable, len(pieces))
	var files []fileSandbox
	var sbs []policy.Sandbox
	for _, p := range pieces {
		t, ok := old[p]
		if !ok {
			if t, ok = v.piece(p, cfg.Host); !ok {
				return nil, nil, false
			}
		}
		tables[p] = t
		files = append(files, t.files...)
		sbs = append(sbs, t.sbs...)
	}
	u := uniqueness{names: map[string]int{}, listen: map[string]int{}}
	for i := range files {
		v.unique(&u, i, &files[i], files)
	}
	if v.errs.err() != nil {
		return nil, nil, false
	}
	set, err := policy.NewSet(sbs, cfg.Host.Guard())
	if err != nil {
		return nil, nil, false
	}
	cfg.Sandboxes = set
	for p, t := range tables {
		if hasOwner(t.files) {
			delete(tables, p) // listen_owner names are looked up afresh each time
		}
	}
	return cfg, tables, true
}

// piece decodes and validates one piece: [[sandbox]] tables only.
func (v *validator) piece(text string, host Host) (loadedTable, bool) {
	top, md, ok := decodePiece(text)
	if !ok || len(top) != 1 {
		return loadedTable{}, false
	}
	p, ok := top["sandbox"]
	if !ok {
		return loadedTable{}, false
	}
	var t loadedTable
	d := decoder{v: v, md: &md}
	dst := reflect.ValueOf(&t.files).Elem()
	if !d.tables(p, "sandbox", dst) {
		return loadedTable{}, false
	}
	for i := range t.files {
		t.sbs = append(t.sbs, v.sandbox(i, &t.files[i], Host{SandboxInterfaces: host.SandboxInterfaces}))
	}
	return t, v.errs.err() == nil
}

func decodePiece(text string) (map[string]toml.Primitive, toml.MetaData, bool) {
	var top map[string]toml.Primitive
	md, err := toml.Decode(text, &top)
	return top, md, err == nil
}

func hasOwner(fs []fileSandbox) bool {
	for i := range fs {
		if fs[i].ListenOwner != "" {
			return true
		}
	}
	return false
}

// cutSandboxes cuts data before every line that is a [[sandbox]] header:
// head is what comes before the first.
func cutSandboxes(data string) (head string, pieces []string) {
	start, at := -1, 0
	for at < len(data) {
		end := strings.IndexByte(data[at:], '\n')
		next := len(data)
		if end >= 0 {
			next = at + end + 1
		}
		if name, array, ok := tableHeader(strings.TrimSpace(data[at:next])); ok && array && name == "sandbox" {
			if start < 0 {
				head = data[:at]
			} else {
				pieces = append(pieces, data[start:at])
			}
			start = at
		}
		at = next
	}
	if start < 0 {
		return data, nil
	}
	return head, append(pieces, data[start:])
}
