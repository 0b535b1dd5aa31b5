package config

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem in a config file and where it is:
//
//	egressd.toml:14: sandbox "sb1": allow_domains[2] "a.*.b": a wildcard may only be the whole leftmost label
//
// Parse returns several of them joined with errors.Join, one per line.
type Error struct {
	File    string // the name given to Parse
	Line    int    // 1-based; 0 when unknown
	Sandbox string // sandbox name, "#N" for an unnamed one (1-based), "" outside [[sandbox]]
	Err     error  // what is wrong; a *policy.FieldError for a list entry
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" { // an API request has no file
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":")
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	switch {
	case strings.HasPrefix(e.Sandbox, "#"):
		b.WriteString("sandbox " + e.Sandbox + ": ")
	case e.Sandbox != "":
		b.WriteString("sandbox " + strconv.Quote(e.Sandbox) + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// maxErrors is how many problems one Parse reports: enough to fix a file in
// one go, few enough to read.
const maxErrors = 20

// errorList collects positioned errors for one file.
type errorList struct {
	file string
	errs []*Error
	more int // errors beyond maxErrors
}

func (l *errorList) add(line int, sandbox string, err error) {
	l.addError(&Error{File: l.file, Line: line, Sandbox: sandbox, Err: err})
}

func (l *errorList) addError(e *Error) {
	if len(l.errs) == maxErrors {
		l.more++
		return
	}
	l.errs = append(l.errs, e)
}

// err is nil when nothing was added, else every error joined.
func (l *errorList) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	// In file order; problems without a line (missing keys) last.
	slices.SortStableFunc(l.errs, func(a, b *Error) int { return cmp.Compare(sortLine(a), sortLine(b)) })
	errs := make([]error, 0, len(l.errs)+1)
	for _, e := range l.errs {
		errs = append(errs, e)
	}
	if l.more > 0 {
		errs = append(errs, fmt.Errorf("%s: %d more errors not shown", l.file, l.more))
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

func sortLine(e *Error) int {
	if e.Line == 0 {
		return math.MaxInt
	}
	return e.Line
}

// valueError is a problem with one scalar key: `proxy.dns_port 0: ...`.
type valueError struct {
	key   string // dotted key path, or the bare key inside [[sandbox]]
	value string // as written, already quoted when it is a string; may be ""
	msg   string
}

func (e *valueError) Error() string {
	if e.value == "" {
		return e.key + ": " + e.msg
	}
	return e.key + " " + e.value + ": " + e.msg
}

func stringValue(key, value, msg string) error {
	return &valueError{key: key, value: strconv.Quote(value), msg: msg}
}

func intValue(key string, value int, msg string) error {
	return &valueError{key: key, value: strconv.Itoa(value), msg: msg}
}

func keyError(key, msg string) error {
	return &valueError{key: key, msg: msg}
}

// sandboxLabel is how messages name sandbox i: by name, or "#N" when it
// has none; "" for i < 0.
func sandboxLabel(i int, name string) string {
	switch {
	case i < 0:
		return ""
	case name != "":
		return name
	default:
		return "#" + strconv.Itoa(i+1)
	}
}
