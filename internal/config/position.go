package config

import (
	"strconv"
	"strings"
)

// sourceIndex finds the line of a key in the config source. The toml
// package keeps key positions to itself, so this is a small scanner of our
// own: it only has to understand files the toml parser has already
// accepted, and it is best effort — a key it cannot place gets line 0 and
// the message simply carries no line number.
type sourceIndex struct {
	lines   []string
	entries []sourceEntry
}

// sourceEntry is one table header or one key = value line.
type sourceEntry struct {
	path    string // full dotted key: "proxy", "proxy.dns_port", "sandbox.name"
	sandbox int    // index of the [[sandbox]] block, -1 outside one
	line    int    // 1-based
}

func newSourceIndex(data []byte) *sourceIndex {
	s := &sourceIndex{lines: strings.Split(string(data), "\n")}
	sc := scanState{sandbox: -1}
	for i, text := range s.lines {
		if e, ok := sc.scanLine(text, i+1); ok {
			s.entries = append(s.entries, e)
		}
	}
	return s
}

// scanState is what the scanner knows between lines.
type scanState struct {
	table     string
	sandbox   int
	depth     int    // open [ or { of a value spanning lines
	multiline string // `"""` or `'''` while inside a multi-line string
}

func (sc *scanState) scanLine(text string, line int) (sourceEntry, bool) {
	if sc.multiline != "" {
		if strings.Count(text, sc.multiline)%2 == 1 {
			sc.multiline = ""
		}
		return sourceEntry{}, false
	}
	if sc.depth > 0 {
		sc.depth = bracketDepth(text, sc.depth)
		return sourceEntry{}, false
	}
	t := strings.TrimSpace(text)
	if name, array, ok := tableHeader(t); ok {
		sc.table = name
		if array && name == "sandbox" {
			sc.sandbox++
		}
		return sourceEntry{path: name, sandbox: sc.sandboxFor(name), line: line}, true
	}
	key, rest, ok := keyValue(t)
	if !ok {
		return sourceEntry{}, false
	}
	for _, q := range []string{`"""`, `'''`} {
		if strings.Count(rest, q)%2 == 1 {
			sc.multiline = q
		}
	}
	if sc.multiline == "" {
		sc.depth = bracketDepth(rest, 0)
	}
	return sourceEntry{path: joinKey(sc.table, key), sandbox: sc.sandboxFor(sc.table), line: line}, true
}

func (sc *scanState) sandboxFor(table string) int {
	if table == "sandbox" || strings.HasPrefix(table, "sandbox.") {
		return sc.sandbox
	}
	return -1
}

// tableHeader recognises "[name]" and "[[name]]" with an optional comment.
func tableHeader(t string) (name string, array, ok bool) {
	if !strings.HasPrefix(t, "[") {
		return "", false, false
	}
	array = strings.HasPrefix(t, "[[")
	open, closing := "[", "]"
	if array {
		open, closing = "[[", "]]"
	}
	end := strings.Index(t, closing)
	if end < 0 {
		return "", false, false
	}
	if after := strings.TrimSpace(t[end+len(closing):]); after != "" && !strings.HasPrefix(after, "#") {
		return "", false, false
	}
	name = normalizeKey(t[len(open):end])
	return name, array, name != ""
}

// keyValue splits `key = value`; the key is normalised (quotes and spaces
// around dots removed).
func keyValue(t string) (key, rest string, ok bool) {
	if t == "" || t[0] == '#' {
		return "", "", false
	}
	eq := keyEnd(t)
	if eq < 0 {
		return "", "", false
	}
	key = normalizeKey(t[:eq])
	return key, t[eq+1:], key != ""
}

// keyEnd returns the index of the '=' that ends the key, skipping quoted
// key parts.
func keyEnd(t string) int {
	for i := 0; i < len(t); i++ {
		switch t[i] {
		case '=':
			return i
		case '"', '\'':
			j := strings.IndexByte(t[i+1:], t[i])
			if j < 0 {
				return -1
			}
			i += j + 1
		}
	}
	return -1
}

func normalizeKey(k string) string {
	parts := strings.Split(k, ".")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if u, err := strconv.Unquote(p); err == nil {
			p = u
		} else if len(p) >= 2 && p[0] == '\'' && p[len(p)-1] == '\'' {
			p = p[1 : len(p)-1]
		}
		parts[i] = p
	}
	return strings.Join(parts, ".")
}

// bracketDepth returns depth plus the brackets and braces text opens minus
// those it closes, ignoring strings and comments.
func bracketDepth(text string, depth int) int {
	for i := 0; i < len(text); i++ {
		switch c := text[i]; c {
		case '[', '{':
			depth++
		case ']', '}':
			depth--
		case '#':
			return max(depth, 0)
		case '"', '\'':
			j := strings.IndexByte(text[i+1:], c)
			if j < 0 {
				return max(depth, 0)
			}
			i += j + 1
		}
	}
	return max(depth, 0)
}

func joinKey(table, key string) string {
	if table == "" {
		return key
	}
	return table + "." + key
}

// line is the line of the key or table header path (inside sandbox block
// sb, or -1 outside any), or 0 when not found.
func (s *sourceIndex) line(path string, sb int) int {
	if i := s.find(path, sb); i >= 0 {
		return s.entries[i].line
	}
	return 0
}

// elemLine is the line of the list element value of path, looking from the
// key's line to the next key; the key's line when the value is not found.
func (s *sourceIndex) elemLine(path string, sb int, value string) int {
	i := s.find(path, sb)
	if i < 0 {
		return 0
	}
	from, to := s.entries[i].line, len(s.lines)
	if i+1 < len(s.entries) {
		to = s.entries[i+1].line - 1
	}
	quoted := []string{strconv.Quote(value), "'" + value + "'"}
	for n := from; n <= to; n++ {
		for _, q := range quoted {
			if strings.Contains(s.lines[n-1], q) {
				return n
			}
		}
	}
	return from
}

func (s *sourceIndex) find(path string, sb int) int {
	for i, e := range s.entries {
		if e.path == path && e.sandbox == sb {
			return i
		}
	}
	return -1
}
