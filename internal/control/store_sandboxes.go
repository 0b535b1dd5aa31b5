package control

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/policy"
)

// The sandboxes created through the API live in state.dir/sandboxes, one
// file each, NAME.json: a sandbox's input never changes once created (its
// policy changes are overrides, in policies.json), so its file is written
// once, when it is created, and removed when it is. seq keeps the
// creation order across restarts.

// storedSandbox is the content of one file of sandboxDir.
type storedSandbox struct {
	Seq uint64 `json:"seq"`
	config.SandboxInput
}

// storedFile is what a Store knows of one file of sandboxDir.
type storedFile struct {
	sb    *policy.Sandbox // the sandbox it holds; nil: one to rewrite or remove
	input []byte          // its SandboxInput as JSON
	seq   uint64
}

func sandboxPath(name string) string { return filepath.Join(sandboxDir, name+".json") }

// sandboxEntries are the changes to sandboxDir that make it hold a: a file
// for each sandbox not stored as it is, a removal for each file of a
// sandbox a does not have. A sandbox stored as this very *policy.Sandbox
// is unchanged (apiSandboxes never changes one), so a change costs the
// sandboxes it adds or removes, not one comparison of content each.
func (s *Store) sandboxEntries(a apiSandboxes) []stateEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []stateEntry
	seq, last := s.nextSeq, uint64(0) // last: the seq of the sandbox before, to keep a's order
	for _, sb := range a.list {
		f, ok := s.stored[sb.Name]
		ok = ok && f.seq > last
		if ok && f.sb == sb {
			last = f.seq
			continue
		}
		in, _ := json.Marshal(a.inputs[sb.Name]) // plain strings and lists: cannot fail
		if ok && f.sb != nil && bytes.Equal(f.input, in) {
			f.sb, last = sb, f.seq
			s.stored[sb.Name] = f
			continue
		}
		seq++
		last = seq
		out = append(out, stateEntry{name: sandboxPath(sb.Name), v: storedSandbox{Seq: seq, SandboxInput: a.inputs[sb.Name]},
			sandbox: sb.Name, file: storedFile{sb: sb, input: in, seq: seq}})
	}
	for name := range s.stored {
		if !a.has(name) {
			out = append(out, stateEntry{name: sandboxPath(name), sandbox: name})
		}
	}
	return out
}

// LoadSandboxes returns the sandboxes created through the API, in
// creation order, checked again with the config file's rules (host: its
// [host] section). A file that cannot be read, parsed or checked is an
// error: starting without a sandbox would leave its interface to the
// guard alone, and starting with a changed one would apply a policy
// nobody set. A state.dir/sandboxes.json of an earlier egressd is read
// instead of the directory while it exists; the next Save moves its
// sandboxes into the directory and removes it.
func (s *Store) LoadSandboxes(host config.Host) (apiSandboxes, error) {
	out := apiSandboxes{inputs: map[string]config.SandboxInput{}}
	files, err := s.readSandboxDir()
	if err != nil {
		return out, err
	}
	legacy, isLegacy, err := s.readLegacy()
	if err != nil {
		return out, err
	}
	stored := map[string]storedFile{}
	var nextSeq uint64
	for _, f := range files {
		stored[f.Name] = storedFile{seq: f.Seq} // kept only when f is what is loaded
		nextSeq = max(nextSeq, f.Seq)
	}
	if isLegacy {
		files = legacy
	}
	for _, f := range files {
		where := filepath.Join(s.dir, sandboxPath(f.Name))
		if isLegacy {
			where = filepath.Join(s.dir, legacyFile)
		}
		sb, err := config.CheckSandbox(f.SandboxInput, host)
		if err == nil {
			err = CheckSpec(f.Policy)
		}
		if err != nil {
			return out, fmt.Errorf("state: %s: %w", where, err)
		}
		if out.has(f.Name) {
			return out, fmt.Errorf("state: %s: sandbox %q listed twice", where, f.Name)
		}
		out = out.with(&sb, f.SandboxInput)
		if !isLegacy {
			in, _ := json.Marshal(f.SandboxInput)
			stored[f.Name] = storedFile{sb: out.list[len(out.list)-1], input: in, seq: f.Seq}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stored, s.nextSeq, s.legacy = stored, nextSeq, isLegacy
	return out, nil
}

// readSandboxDir reads every file of sandboxDir, sorted by seq, skipping
// temp files (a write in progress, or one a crash interrupted: never
// renamed, never in force; not removed, as egressd check also reads the
// directory of a running egressd). Anything else in it is an error.
func (s *Store) readSandboxDir() ([]storedSandbox, error) {
	dir := filepath.Join(s.dir, sandboxDir)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	var out []storedSandbox
	for _, ent := range ents {
		path := filepath.Join(dir, ent.Name())
		name, ok := strings.CutSuffix(ent.Name(), ".json")
		if !ok && strings.Contains(ent.Name(), ".json"+tmpInfix) {
			continue // a temp file: its random part ends the name, never ".json"
		}
		if !ok || !ent.Type().IsRegular() {
			return nil, fmt.Errorf("state: %s: not a sandbox file (NAME.json): remove it", path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("state: %w", err)
		}
		var f storedSandbox
		if err := decodeStrict(path, data, &f); err != nil {
			return nil, err
		}
		if f.Name != name {
			return nil, fmt.Errorf("state: %s: holds sandbox %q: the file must be named %s.json", path, f.Name, f.Name)
		}
		out = append(out, f)
	}
	slices.SortStableFunc(out, func(a, b storedSandbox) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

// readLegacy reads state.dir/sandboxes.json, if there is one.
func (s *Store) readLegacy() ([]storedSandbox, bool, error) {
	path := filepath.Join(s.dir, legacyFile)
	data, ok, err := readFile(path)
	if !ok || err != nil {
		return nil, false, err
	}
	var list []config.SandboxInput
	if err := decodeStrict(path, data, &list); err != nil {
		return nil, false, err
	}
	out := make([]storedSandbox, len(list))
	for i, in := range list {
		out[i] = storedSandbox{SandboxInput: in}
	}
	return out, true, nil
}
