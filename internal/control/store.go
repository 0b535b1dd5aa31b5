package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/policy"
)

// Files inside state.dir.
const (
	stateFile   = "policies.json"  // the admin API's overrides
	guardedFile = "guarded.json"   // every interface a sandbox ever named
	sandboxFile = "sandboxes.json" // sandboxes created through the API
)

// Store persists policy overrides in a directory, atomically: a crash
// leaves either the old file or the new one, never a mix.
type Store struct {
	dir     string
	mu      sync.Mutex
	written map[string][]byte // what each file holds, as this Store last wrote it
}

// NewStore returns a store in dir (created on first Save).
func NewStore(dir string) *Store { return &Store{dir: dir} }

// Load returns the persisted overrides; none when the file does not exist.
// A file that cannot be read or parsed is an error: starting without a
// persisted lock-down would loosen a policy.
func (s *Store) Load() (map[string]policy.Spec, error) {
	path := filepath.Join(s.dir, stateFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]policy.Spec{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return parseState(path, data)
}

// parseState reads the state file strictly: a key it does not know (a
// hand edit's "deny_cidr") or a policy that does not validate would
// otherwise start egressd looser than the policy that was persisted.
func parseState(path string, data []byte) (map[string]policy.Spec, error) {
	var out map[string]policy.Spec
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("state: %s: %w", path, err)
	}
	if out == nil {
		return nil, fmt.Errorf("state: %s: not a JSON object of sandbox policies", path)
	}
	for name, spec := range out {
		if err := CheckSpec(spec); err != nil {
			return nil, fmt.Errorf("state: %s: sandbox %q: %w", path, name, err)
		}
	}
	return out, nil
}

// LoadGuarded returns the persisted guarded interfaces; none when the
// file does not exist. A file that cannot be read or parsed is an error:
// starting without it would un-guard the interfaces of removed sandboxes.
func (s *Store) LoadGuarded() ([]string, error) {
	path := filepath.Join(s.dir, guardedFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	var out []string
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("state: %s: want a JSON list of interface names: %w", path, err)
	}
	for _, name := range out {
		if err := config.CheckInterface(name); err != nil {
			return nil, fmt.Errorf("state: %s: %w", path, err)
		}
	}
	return out, nil
}

// SaveGuarded persists the guarded interfaces, atomically.
func (s *Store) SaveGuarded(ifaces []string) error {
	return s.write(guardedFile, ifaces)
}

// ForgetGuarded removes the guarded interfaces' file: egressd cleanup
// un-guards them.
func (s *Store) ForgetGuarded() error {
	s.mu.Lock()
	delete(s.written, guardedFile)
	s.mu.Unlock()
	err := os.Remove(filepath.Join(s.dir, guardedFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// LoadSandboxes returns the sandboxes created through the API, checked
// again with the config file's rules (host: its [host] section). A file
// that cannot be read, parsed or checked is an error: starting without a
// sandbox would leave its interface to the guard alone, and starting with
// a changed one would apply a policy nobody set.
func (s *Store) LoadSandboxes(host config.Host) (apiSandboxes, error) {
	out := apiSandboxes{inputs: map[string]config.SandboxInput{}}
	path := filepath.Join(s.dir, sandboxFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return out, fmt.Errorf("state: %w", err)
	}
	var list []config.SandboxInput
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&list); err != nil {
		return out, fmt.Errorf("state: %s: %w", path, err)
	}
	for _, in := range list {
		sb, err := config.CheckSandbox(in, host)
		if err == nil {
			err = CheckSpec(in.Policy)
		}
		if err != nil {
			return out, fmt.Errorf("state: %s: %w", path, err)
		}
		if out.has(in.Name) {
			return out, fmt.Errorf("state: %s: sandbox %q listed twice", path, in.Name)
		}
		out = out.with(&sb, in)
	}
	return out, nil
}

// SaveSandboxes persists the sandboxes created through the API, in
// creation order, atomically.
func (s *Store) SaveSandboxes(a apiSandboxes) error {
	list := make([]config.SandboxInput, 0, len(a.list))
	for _, sb := range a.list {
		list = append(list, a.inputs[sb.Name])
	}
	return s.write(sandboxFile, list)
}

// Save persists overrides, atomically.
func (s *Store) Save(overrides map[string]policy.Spec) error {
	return s.write(stateFile, overrides)
}

// write stores v as JSON in the file name: temp file, fsync, rename,
// fsync of the directory. A file this Store wrote with the same content
// is left alone: each change costs only the files it changes.
func (s *Store) write(name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	data = append(data, '\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev, ok := s.written[name]; ok && bytes.Equal(prev, data) {
		return nil
	}
	delete(s.written, name) // unknown until the write succeeds
	if err := s.makeDir(); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.dir, name+".tmp-*")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("state: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("state: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(s.dir, name)); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	if s.written == nil {
		s.written = map[string][]byte{}
	}
	s.written[name] = data
	return nil
}

// makeDir creates the state directory on first use and syncs its parent,
// so that the directory itself survives a crash.
func (s *Store) makeDir() error {
	if _, err := os.Stat(s.dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return syncDir(filepath.Dir(s.dir))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("state: sync %s: %w", dir, err)
	}
	return nil
}
