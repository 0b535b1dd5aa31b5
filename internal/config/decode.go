package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// Decoding goes table by table and key by key. toml's own struct decoding
// matches keys case-insensitively and visits them in map order, so with
// `mode` and `Mode` both set either could win, and only one random type
// error would be reported. Here every table is first read as a
// map[string]toml.Primitive: keys match the schema exactly, anything else
// is an unknown key, and each key's value is decoded on its own so that
// every type error is reported with its key and line.

// decode fills the file schema from data. Only a syntax error is
// returned; type errors and unknown keys go to v.errs, and a sandbox with
// one is marked broken so validation skips it.
func (v *validator) decode(data []byte) (fileConfig, error) {
	fc := defaultFile()
	var top map[string]toml.Primitive
	md, err := toml.Decode(string(data), &top)
	if err != nil {
		return fc, v.syntaxError(err)
	}
	d := decoder{v: v, md: &md}
	d.fields(top, "", -1, "", reflect.ValueOf(&fc).Elem())
	return fc, nil
}

// syntaxError positions an error from the toml parser.
func (v *validator) syntaxError(err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return &Error{File: v.errs.file, Line: pe.Position.Line, Err: errors.New(pe.Message)}
	}
	return &Error{File: v.errs.file, Err: errors.New(strings.TrimPrefix(err.Error(), "toml: "))}
}

type decoder struct {
	v  *validator
	md *toml.MetaData
}

// fields decodes table m into the struct dst: path is the table's dotted
// key ("" at the top), sb the [[sandbox]] index or -1, label how messages
// name that sandbox. It reports whether everything decoded.
func (d *decoder) fields(m map[string]toml.Primitive, path string, sb int, label string, dst reflect.Value) bool {
	ok := true
	known := make(map[string]bool, dst.NumField())
	for i := range dst.NumField() {
		f := dst.Type().Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		known[key] = true
		if p, set := m[key]; set {
			ok = d.value(p, joinKey(path, key), sb, label, f, dst.Field(i)) && ok
		}
	}
	unknown := make([]string, 0)
	for key := range m {
		if !known[key] {
			unknown = append(unknown, key)
		}
	}
	slices.Sort(unknown)
	for _, key := range unknown {
		msg := fmt.Sprintf("unknown key %q", d.shown(joinKey(path, key), sb))
		if s := suggest(key, known); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", d.shown(joinKey(path, s), sb))
		}
		d.bad(joinKey(path, key), sb, label, errors.New(msg))
	}
	return ok && len(unknown) == 0
}

// value decodes one key into dst, recursing into tables.
func (d *decoder) value(p toml.Primitive, path string, sb int, label string, f reflect.StructField, dst reflect.Value) bool {
	switch {
	case dst.Kind() == reflect.Struct:
		var m map[string]toml.Primitive
		if err := d.md.PrimitiveDecode(p, &m); err != nil {
			d.bad(path, sb, label, keyError(d.shown(path, sb), "must be a table: ["+path+"]"))
			return false
		}
		return d.fields(m, path, sb, label, dst)
	case dst.Kind() == reflect.Slice && dst.Type().Elem().Kind() == reflect.Struct:
		return d.tables(p, path, dst)
	}
	if err := d.md.PrimitiveDecode(p, dst.Addr().Interface()); err != nil {
		d.bad(path, sb, label, keyError(d.shown(path, sb), "must be "+want(f)))
		return false
	}
	return true
}

// tables decodes an array of tables ([[sandbox]]); dst is a slice of
// structs. A table that does not decode is recorded in v.broken.
func (d *decoder) tables(p toml.Primitive, path string, dst reflect.Value) bool {
	var list []map[string]toml.Primitive
	if err := d.md.PrimitiveDecode(p, &list); err != nil {
		d.bad(path, -1, "", keyError(path, "must be an array of tables: [["+path+"]]"))
		d.v.badSandboxes = true
		return false
	}
	dst.Set(reflect.MakeSlice(dst.Type(), len(list), len(list)))
	ok := true
	for i, m := range list {
		var name string
		if p, set := m["name"]; set {
			_ = d.md.PrimitiveDecode(p, &name) // a bad name is reported below
		}
		if !d.fields(m, path, i, sandboxLabel(i, name), dst.Index(i)) {
			d.v.broken[i], ok = true, false
		}
	}
	return ok
}

// bad records a problem with path, positioned in sandbox sb (or -1).
func (d *decoder) bad(path string, sb int, label string, err error) {
	d.v.errs.add(d.v.src.line(path, sb), label, err)
}

// shown is path as a message shows it: inside a sandbox, the bare key.
func (d *decoder) shown(path string, sb int) string {
	if sb < 0 {
		return path
	}
	_, key, _ := strings.Cut(path, ".")
	return key
}

// want describes the type a field takes: its `want` tag, or its Go type.
func want(f reflect.StructField) string {
	if w := f.Tag.Get("want"); w != "" {
		return w
	}
	switch f.Type.Kind() {
	case reflect.Int:
		return "an integer"
	case reflect.Slice:
		return "an array of strings"
	}
	return "a string"
}

// suggest returns the known key closest to key, if it is a likely typo:
// at most two edits away, or equal but for case and '-' versus '_'.
func suggest(key string, known map[string]bool) string {
	norm := strings.ReplaceAll(strings.ToLower(key), "-", "_")
	best, bestDist := "", min(3, len(norm)/3+2) // no wild guesses for short keys
	for k := range known {
		d := editDistance(norm, k)
		if d < bestDist || (d == bestDist && k < best) {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
