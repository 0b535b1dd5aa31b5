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
	stateFile   = "policies.json" // the admin API's overrides
	guardedFile = "guarded.json"  // every interface a sandbox ever named
	sandboxDir  = "sandboxes"     // sandboxes created through the API, one NAME.json each
	// legacyFile held every API sandbox in one file, rewritten on each
	// change; read once, then replaced by sandboxDir.
	legacyFile = "sandboxes.json"
)

// Store persists policy overrides in a directory, atomically: a crash
// leaves either the old file or the new one, never a mix.
type Store struct {
	dir     string
	mu      sync.Mutex
	written map[string][]byte // what each file holds, as this Store last read or wrote it
	// stored are the files of sandboxDir, by sandbox name, as last read
	// or written; legacy says legacyFile is still to be removed.
	stored  map[string]storedFile
	nextSeq uint64
	legacy  bool
}

// NewStore returns a store in dir (created on first Save).
func NewStore(dir string) *Store { return &Store{dir: dir} }

// Load returns the persisted overrides; none when the file does not exist.
// A file that cannot be read or parsed is an error: starting without a
// persisted lock-down would loosen a policy.
func (s *Store) Load() (map[string]policy.Spec, error) {
	path := filepath.Join(s.dir, stateFile)
	data, ok, err := readFile(path)
	if !ok || err != nil {
		return map[string]policy.Spec{}, err
	}
	s.read(stateFile, data)
	return parseState(path, data)
}

// readFile reads the file at path; false when there is none.
func readFile(path string) ([]byte, bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("state: %w", err)
	}
	return data, true, nil
}

// decodeStrict decodes the JSON in data, from the file at path, into v,
// refusing keys v does not have.
func decodeStrict(path string, data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("state: %s: %w", path, err)
	}
	return nil
}

// parseState reads the state file strictly: a key it does not know (a
// hand edit's "deny_cidr") or a policy that does not validate would
// otherwise start egressd looser than the policy that was persisted.
func parseState(path string, data []byte) (map[string]policy.Spec, error) {
	var out map[string]policy.Spec
	if err := decodeStrict(path, data, &out); err != nil {
		return nil, err
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
	data, ok, err := readFile(path)
	if !ok || err != nil {
		return nil, err
	}
	s.read(guardedFile, data)
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

// Save persists the sandboxes created through the API, the policy
// overrides and the guarded interfaces: each file atomically, and all of
// them with one wait for the disk (see write). A sandbox's file is
// written when it is created and removed when it is: a change costs the
// files it changes, whatever the number of sandboxes.
func (s *Store) Save(a apiSandboxes, overrides map[string]policy.Spec, guarded []string) error {
	if overrides == nil {
		overrides = map[string]policy.Spec{} // "null" would not load
	}
	if guarded == nil {
		guarded = []string{}
	}
	// Guarded first: an interface is guarded before a sandbox naming it
	// is persisted, whatever happens after.
	entries := []stateEntry{{name: guardedFile, v: guarded}}
	entries = append(entries, s.sandboxEntries(a)...)
	return s.write(append(entries, stateEntry{name: stateFile, v: overrides}))
}

// read notes what the file name holds, as loaded: a Save that would write
// the same bytes leaves it alone.
func (s *Store) read(name string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.written == nil {
		s.written = map[string][]byte{}
	}
	s.written[name] = data
}

// stateEntry is one file of the state directory and what it holds.
type stateEntry struct {
	name string // its path inside the state directory
	v    any    // nil: the file is removed
	// sandbox names the API sandbox whose file in sandboxDir this is,
	// and file what Store.stored notes for it once written.
	sandbox string
	file    storedFile
}

// write stores each entry as JSON in its file: temp file, fsync, rename,
// then one fsync of each directory changed, and removes the files of
// entries without a value. A file this Store wrote with the same content
// is left alone, so a change costs only the files it changes; the temp
// files, and then the directories, are synced concurrently, which the
// filesystem serves with one journal commit each (measured on ext4 under
// CPU load: two files cost what one does). A crash leaves each file old
// or new, never a mix within one; the files are renamed in order.
func (s *Store) write(entries []stateEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	todo, gone, err := s.pending(entries)
	if err != nil {
		return err
	}
	if len(todo) == 0 && len(gone) == 0 && !s.legacy {
		return nil
	}
	s.unknown(todo, gone)
	dirs, err := s.makeDirs(todo)
	if err != nil {
		return err
	}
	defer func() {
		for _, p := range todo {
			if p.tmp != nil {
				p.tmp.Close()
				os.Remove(p.tmp.Name()) // no-op after the rename
			}
		}
	}()
	if err := writeTemps(s.dir, todo); err != nil {
		return err
	}
	// The policies, and the removal of the legacy file, come last: a
	// crash must not leave a removed sandbox's file without the
	// override that held it (it would come back with the policy it was
	// created with), nor the legacy file gone before the files that
	// replace it. When they change with sandbox files, those are synced
	// first: two waits for the disk, for a DELETE of a sandbox with an
	// override and for the move from the legacy file only.
	var early, late []*pendingFile
	for _, p := range todo {
		if p.e.name == stateFile {
			late = append(late, p)
		} else {
			early = append(early, p)
		}
	}
	if err := s.commit(early, gone, dirs); err != nil {
		return err
	}
	if len(late) > 0 || s.legacy {
		if len(early) > 0 || len(gone) > 0 {
			if err := syncDirs(dirs); err != nil {
				return err
			}
			dirs = map[string]bool{}
		}
		if err := s.commit(late, nil, dirs); err != nil {
			return err
		}
		if s.legacy { // its sandboxes are in sandboxDir now
			if err := os.Remove(filepath.Join(s.dir, legacyFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("state: %w", err)
			}
			dirs[s.dir] = true
		}
	}
	if err := syncDirs(dirs); err != nil {
		return err
	}
	s.legacy = false
	s.wrote(todo, gone)
	return nil
}

// commit renames the temp files of todo over their files and removes the
// files of gone, noting their directories in dirs.
func (s *Store) commit(todo []*pendingFile, gone []stateEntry, dirs map[string]bool) error {
	for _, p := range todo {
		path := filepath.Join(s.dir, p.e.name)
		if err := os.Rename(p.tmp.Name(), path); err != nil {
			return fmt.Errorf("state: %w", err)
		}
		dirs[filepath.Dir(path)] = true
	}
	for _, e := range gone {
		path := filepath.Join(s.dir, e.name)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("state: %w", err)
		}
		dirs[filepath.Dir(path)] = true
	}
	return nil
}

// unknown forgets what the files of todo and gone hold until write
// succeeds: after a failure, the next write rewrites or removes each of
// them whatever it finds (a sandbox file renamed into place before the
// failure is removed, one removed is written again).
func (s *Store) unknown(todo []*pendingFile, gone []stateEntry) {
	if s.stored == nil {
		s.stored = map[string]storedFile{}
	}
	for _, p := range todo {
		if p.e.sandbox == "" {
			delete(s.written, p.e.name)
			continue
		}
		s.stored[p.e.sandbox] = storedFile{seq: p.e.file.seq}
		s.nextSeq = max(s.nextSeq, p.e.file.seq) // never used twice
	}
	for _, e := range gone {
		f := s.stored[e.sandbox]
		f.sb = nil
		s.stored[e.sandbox] = f
	}
}

// pendingFile is a file write is writing.
type pendingFile struct {
	e    stateEntry
	data []byte
	tmp  *os.File
}

// pending returns the entries whose file changes: those to write, with
// their content, and those to remove.
func (s *Store) pending(entries []stateEntry) (todo []*pendingFile, gone []stateEntry, err error) {
	for _, e := range entries {
		if e.v == nil {
			gone = append(gone, e)
			continue
		}
		data, err := json.MarshalIndent(e.v, "", "  ")
		if err != nil {
			return nil, nil, fmt.Errorf("state: %s: %w", e.name, err)
		}
		data = append(data, '\n')
		if prev, ok := s.written[e.name]; ok && bytes.Equal(prev, data) {
			continue
		}
		todo = append(todo, &pendingFile{e: e, data: data})
	}
	return todo, gone, nil
}

// writeTemps writes each file's content to a temp file beside it and
// syncs them all, concurrently.
func writeTemps(stateDir string, todo []*pendingFile) error {
	for _, p := range todo {
		dir, base := filepath.Split(p.e.name)
		tmp, err := os.CreateTemp(filepath.Join(stateDir, dir), base+tmpInfix+"*")
		if err != nil {
			return fmt.Errorf("state: %w", err)
		}
		p.tmp = tmp
		if _, err := tmp.Write(p.data); err != nil {
			return fmt.Errorf("state: write %s: %w", tmp.Name(), err)
		}
	}
	errs := make([]error, len(todo))
	var wg sync.WaitGroup
	for i, p := range todo {
		wg.Go(func() {
			if err := p.tmp.Sync(); err != nil {
				errs[i] = fmt.Errorf("state: sync %s: %w", p.tmp.Name(), err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// tmpInfix marks a temp file of write; loads skip them.
const tmpInfix = ".tmp-"

// wrote notes what write wrote and removed.
func (s *Store) wrote(todo []*pendingFile, gone []stateEntry) {
	if s.written == nil {
		s.written = map[string][]byte{}
	}
	for _, p := range todo {
		if p.e.sandbox == "" {
			s.written[p.e.name] = p.data
			continue
		}
		s.stored[p.e.sandbox] = p.e.file
	}
	for _, e := range gone {
		delete(s.stored, e.sandbox)
	}
}

// makeDirs creates the state directory, and sandboxDir when todo writes
// there, on first use, and returns the directories to sync for the new
// entries (the parent of each one created).
func (s *Store) makeDirs(todo []*pendingFile) (map[string]bool, error) {
	dirs := map[string]bool{}
	if _, err := os.Stat(s.dir); err != nil {
		if err := os.MkdirAll(s.dir, 0o700); err != nil {
			return nil, fmt.Errorf("state: %w", err)
		}
		dirs[filepath.Dir(s.dir)] = true
	}
	for _, p := range todo {
		if p.e.sandbox == "" {
			continue
		}
		sub := filepath.Join(s.dir, sandboxDir)
		if _, err := os.Stat(sub); err != nil {
			if err := os.Mkdir(sub, 0o700); err != nil {
				return nil, fmt.Errorf("state: %w", err)
			}
			dirs[s.dir] = true
		}
		break
	}
	return dirs, nil
}

// syncDirs fsyncs every directory in dirs, concurrently.
func syncDirs(dirs map[string]bool) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for dir := range dirs {
		wg.Go(func() {
			if err := syncDir(dir); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
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
