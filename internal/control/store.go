package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/egressd/egressd/policy"
)

// stateFile holds the admin API's overrides, inside state.dir.
const stateFile = "policies.json"

// Store persists policy overrides in a directory, atomically: a crash
// leaves either the old file or the new one, never a mix.
type Store struct {
	dir string
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
	out := map[string]policy.Spec{}
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("state: %s: %w", path, err)
	}
	return out, nil
}

// Save writes overrides: temp file, fsync, rename, fsync of the directory.
func (s *Store) Save(overrides map[string]policy.Spec) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	data, err := json.MarshalIndent(overrides, "", "  ")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	tmp, err := os.CreateTemp(s.dir, stateFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(append(data, '\n')); err != nil {
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
	if err := os.Rename(tmp.Name(), filepath.Join(s.dir, stateFile)); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return syncDir(s.dir)
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
