package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"github.com/BurntSushi/toml"
)

// FuzzParse feeds arbitrary bytes to Parse: it must not panic, every
// rejection must say where, an accepted config, written back out as
// TOML, must parse again to the same Config, and a Loader that parsed the
// example first must answer exactly as Parse does.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*/*.toml")
	seeds = append(seeds, "../../examples/egressd.toml")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	example, err := os.ReadFile("../../examples/egressd.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l := NewLoader()
		if _, err := l.Parse("a.toml", example); err != nil {
			t.Fatal(err)
		}
		sameAsParse(t, l, data)
		cfg, err := Parse("fuzz.toml", data)
		if err != nil {
			if cfg != nil {
				t.Fatalf("Parse returned a config and an error: %v", err)
			}
			if msg := err.Error(); len(msg) < len("fuzz.toml: x") || msg[:len("fuzz.toml")] != "fuzz.toml" {
				t.Fatalf("error does not start with the file name: %q", msg)
			}
			return
		}
		again, err := Parse("fuzz.toml", marshal(t, cfg))
		if err != nil {
			t.Fatalf("accepted config does not re-validate: %v\n%s", err, marshal(t, cfg))
		}
		if got, want := summarize(again), summarize(cfg); !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip changed the config\ngot  %+v\nwant %+v", got, want)
		}
	})
}

// marshal writes cfg back out in the file schema.
func marshal(t *testing.T, cfg *Config) []byte {
	t.Helper()
	fc := fileConfig{
		Proxy: fileProxy{
			TProxyPort:         cfg.Proxy.TProxyPort,
			DNSPort:            cfg.Proxy.DNSPort,
			PeekTimeout:        cfg.Proxy.PeekTimeout.String(),
			MaxConnsPerSandbox: cfg.Proxy.MaxConnsPerSandbox,
			DialTimeout:        cfg.Proxy.DialTimeout.String(),
			ShutdownTimeout:    cfg.Proxy.ShutdownTimeout.String(),
			IdleTimeout:        cfg.Proxy.IdleTimeout.String(),
			MaxPeekBytesPerSb:  cfg.Proxy.MaxPeekBytesPerSandbox,
			MaxPeekBytes:       cfg.Proxy.MaxPeekBytes,
		},
		Admin: fileAdmin{Socket: cfg.Admin.Socket, Metrics: cfg.Admin.Metrics},
		State: fileState{Dir: cfg.State.Dir},
		Host: fileHost{SandboxInterfaces: cfg.Host.SandboxInterfaces, ProtectHost: cfg.Host.ProtectHost,
			IsolateSandboxes: cfg.Host.IsolateSandboxes, Reject: cfg.Host.Reject},
		DNS: fileDNS{
			MinBindingTTL:         cfg.DNS.MinBindingTTL.String(),
			BlockPrivateAnswers:   cfg.DNS.BlockPrivateAnswers,
			CacheSize:             cfg.DNS.CacheSize,
			MaxBindingsPerSandbox: cfg.DNS.MaxBindingsPerSandbox,
		},
	}
	for _, u := range cfg.Proxy.UpstreamDNS {
		fc.Proxy.UpstreamDNS = append(fc.Proxy.UpstreamDNS, u.String())
	}
	for _, sb := range cfg.Sandboxes.All() {
		spec := sb.Policy.Spec()
		fs := fileSandbox{Name: sb.Name, Interface: sb.Interface, Mode: string(spec.Mode),
			AllowDomains: spec.AllowDomains, AllowCIDRs: spec.AllowCIDRs, DenyCIDRs: spec.DenyCIDRs, Audit: spec.Audit}
		for _, p := range sb.Sources {
			fs.Sources = append(fs.Sources, p.String())
		}
		for _, l := range sb.Listen {
			fs.Listen = append(fs.Listen, l.String())
			if l.User != "" {
				fs.ListenAuth = l.User + ":" + l.PassHash
			}
			if l.Network == "unix" {
				fs.ListenMode = fmt.Sprintf("%o", l.Mode)
				if l.UID >= 0 || l.GID >= 0 {
					fs.ListenOwner = ownerString(l.UID) + ":" + ownerString(l.GID)
				}
			}
		}
		fc.Sandbox = append(fc.Sandbox, fs)
	}
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(fc); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func ownerString(id int) string {
	if id < 0 {
		return ""
	}
	return strconv.Itoa(id)
}

// summarize is cfg with its sandboxes as plain values, for comparison.
func summarize(cfg *Config) any {
	type sandbox struct {
		Name, Interface string
		Sources         []string
		Listen          any
		Spec            any
	}
	var sbs []sandbox
	for _, sb := range cfg.Sandboxes.All() {
		s := sandbox{Name: sb.Name, Interface: sb.Interface, Listen: sb.Listen, Spec: sb.Policy.Spec()}
		for _, p := range sb.Sources {
			s.Sources = append(s.Sources, p.String())
		}
		sbs = append(sbs, s)
	}
	return []any{cfg.Proxy, cfg.Admin, cfg.State, cfg.DNS, sbs}
}

// TestRoundTrip runs the fuzz property on the example config.
func TestRoundTrip(t *testing.T) {
	cfg, err := Load("../../examples/egressd.toml")
	if err != nil {
		t.Fatal(err)
	}
	out := marshal(t, cfg)
	again, err := Parse("again.toml", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !reflect.DeepEqual(summarize(again), summarize(cfg)) {
		t.Errorf("round trip changed the config:\n%s", out)
	}
}
