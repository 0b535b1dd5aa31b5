package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/egressd/egressd/policy"
)

// sameAsParse fails unless l.Parse(data) gives what Parse(data) gives:
// the same config, or the same error message.
func sameAsParse(t *testing.T, l *Loader, data []byte) *Config {
	t.Helper()
	want, werr := Parse("a.toml", data)
	got, gerr := l.Parse("a.toml", data)
	if (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
		t.Fatalf("Loader.Parse error %v, Parse error %v\n%s", gerr, werr, data)
	}
	if werr != nil {
		return nil
	}
	if g, w := loaderSummary(got), loaderSummary(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("Loader.Parse differs from Parse\ngot  %+v\nwant %+v\n%s", g, w, data)
	}
	return got
}

func loaderSummary(cfg *Config) any { return []any{cfg.Path, cfg.Host, summarize(cfg)} }

// TestLoaderMatchesParse loads every fixture cold, again warm, and after
// another file, and wants Parse's answer each time.
func TestLoaderMatchesParse(t *testing.T) {
	files, _ := filepath.Glob("testdata/*/*.toml")
	files = append(files, "../../examples/egressd.toml")
	example, err := os.ReadFile("../../examples/egressd.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			l := NewLoader()
			sameAsParse(t, l, data)
			sameAsParse(t, l, data)
			sameAsParse(t, l, example)
			sameAsParse(t, l, data)
		})
	}
}

// sandboxesFile is n custom sandboxes behind a [host] with guards.
func sandboxesFile(n int, guards string, edit func(i int) string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "[proxy]\nupstream_dns = [\"198.51.100.53\"]\n\n[host]\nsandbox_interfaces = [%s]\n\n", guards)
	for i := range n {
		fmt.Fprintf(&b, "[[sandbox]]\nname = \"sb%d\"\ninterface = \"veth-sb%d\"\nsources = [\"10.240.%d.%d/32\"]\nmode = \"custom\"\n"+
			"allow_domains = [\"pkg.test\", \"*.b.test\"]\n%s\n", i, i, i/250, i%250+1, edit(i))
	}
	return []byte(b.String())
}

func policies(cfg *Config) []*policy.Policy {
	var out []*policy.Policy
	for _, sb := range cfg.Sandboxes.All() {
		out = append(out, sb.Policy)
	}
	return out
}

// TestLoaderReusesUnchangedSandboxes edits one sandbox and wants every
// other sandbox's compiled policy reused, the edited one recompiled, and
// the result equal to Parse's.
func TestLoaderReusesUnchangedSandboxes(t *testing.T) {
	l := NewLoader()
	none := func(int) string { return "" }
	before := policies(sameAsParse(t, l, sandboxesFile(5, `"veth-sb*"`, none)))
	edited := func(i int) string {
		if i == 2 {
			return `allow_cidrs = ["198.51.100.7/32"]`
		}
		return ""
	}
	after := policies(sameAsParse(t, l, sandboxesFile(5, `"veth-sb*"`, edited)))
	for i := range before {
		if reused := before[i] == after[i]; reused != (i != 2) {
			t.Errorf("sandbox %d: policy reused = %v after editing sandbox 2", i, reused)
		}
	}
	// A different host.sandbox_interfaces rechecks every sandbox: here
	// none of them is guarded any more, and the error is Parse's.
	sameAsParse(t, l, sandboxesFile(5, `"tap*"`, edited))
	again := policies(sameAsParse(t, l, sandboxesFile(5, `"veth-*"`, edited)))
	if again[0] == after[0] {
		t.Errorf("policy reused after host.sandbox_interfaces changed")
	}
}

// TestLoaderRefusesWhatParseRefuses: a mistake that only the whole file
// shows (a name or source taken twice, a [[sandbox]] header inside a
// string, a table after the sandboxes) is Parse's error, and the next
// good file loads.
func TestLoaderRefusesWhatParseRefuses(t *testing.T) {
	none := func(int) string { return "" }
	good := sandboxesFile(3, `"veth-sb*"`, none)
	for name, data := range map[string]string{
		"name twice":       strings.Replace(string(good), `name = "sb1"`, `name = "sb0"`, 1),
		"source twice":     strings.Replace(string(good), `10.240.0.2/32`, `10.240.0.0/24`, 1),
		"interface twice":  strings.Replace(string(good), `"veth-sb1"`, `"veth-sb0"`, 1),
		"header in string": strings.Replace(string(good), `mode = "custom"`, "mode = '''\n[[sandbox]]\n'''", 1),
		"header in array":  strings.Replace(string(good), `allow_domains = [`, "allow_domains = [\n[[sandbox]]\n", 1),
		"table after":      string(good) + "[dns]\ncache_size = 1\n",
		"sandbox in head":  "sandbox = 1\n" + string(good),
		"subtable":         string(good) + "[sandbox.extra]\nx = 1\n",
		"unknown key":      strings.Replace(string(good), `mode = "custom"`, "mode = \"custom\"\nmdoe = 1", 1),
		"bad domain":       strings.Replace(string(good), `"pkg.test"`, `"pkg..test"`, 1),
		"no sandbox":       "[proxy]\nupstream_dns = [\"198.51.100.53\"]\n",
		"guard mismatch":   strings.Replace(string(good), `"veth-sb2"`, `"eth0"`, 1),
		"crlf":             strings.ReplaceAll(string(good), "\n", "\r\n"),
		"indented header":  strings.ReplaceAll(string(good), "[[sandbox]]", "  [[ sandbox ]] # c"),
	} {
		t.Run(name, func(t *testing.T) {
			l := NewLoader()
			sameAsParse(t, l, good)
			sameAsParse(t, l, []byte(data))
			sameAsParse(t, l, good)
		})
	}
}

// BenchmarkReload is a SIGHUP's parse at 1,000 sandboxes with one
// sandbox edited, against Parse of the same file.
func BenchmarkReload(b *testing.B) {
	const n = 1000
	files := [2][]byte{}
	for k := range files {
		files[k] = sandboxesFile(n, `"veth-sb*"`, func(i int) string {
			if i == n/2 {
				return fmt.Sprintf(`allow_cidrs = ["198.51.100.%d/32"]`, k+1)
			}
			return ""
		})
	}
	b.Run("Parse", func(b *testing.B) {
		k := 0
		for b.Loop() {
			k ^= 1
			if _, err := Parse("a.toml", files[k]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Loader", func(b *testing.B) {
		l, k := NewLoader(), 0
		for b.Loop() {
			k ^= 1
			if _, err := l.Parse("a.toml", files[k]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
