package config

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/invalid/*.golden from the current messages")

// TestInvalid parses each testdata/invalid/NAME.toml, one broken rule per
// file, and compares the message with NAME.golden.
func TestInvalid(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.toml")
	if err != nil || len(files) < 15 {
		t.Fatalf("want at least 15 invalid fixtures, got %d (%v)", len(files), err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".toml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := Parse("egressd.toml", data)
			if err == nil {
				t.Fatalf("Parse accepted an invalid config: %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("Parse returned a config with its error")
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("error %v (%T) holds no *config.Error", err, err)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(file, ".toml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestInvalid -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("message mismatch\ngot:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestExample(t *testing.T) {
	cfg, err := Load("../../examples/egressd.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := Proxy{
		TProxyPort:             15001,
		DNSPort:                15053,
		UpstreamDNS:            []netip.AddrPort{netip.MustParseAddrPort("198.51.100.53:53")},
		PeekTimeout:            5 * time.Second,
		DialTimeout:            5 * time.Second,
		ShutdownTimeout:        10 * time.Second,
		IdleTimeout:            time.Hour,
		MaxConnsPerSandbox:     4096,
		MaxPeekBytesPerSandbox: 16 << 20,
		MaxPeekBytes:           256 << 20,
	}
	if !reflect.DeepEqual(cfg.Proxy, want) {
		t.Errorf("proxy = %+v, want %+v", cfg.Proxy, want)
	}
	if cfg.Admin != (Admin{Socket: "/run/egressd/admin.sock", Metrics: "127.0.0.1:9464"}) {
		t.Errorf("admin = %+v", cfg.Admin)
	}
	if want := (DNS{MinBindingTTL: time.Hour, BlockPrivateAnswers: true, CacheSize: 10000, MaxBindingsPerSandbox: 65536}); cfg.DNS != want {
		t.Errorf("dns = %+v, want %+v", cfg.DNS, want)
	}
	if cfg.State.Dir != "/var/lib/egressd" {
		t.Errorf("state.dir = %q", cfg.State.Dir)
	}
	if cfg.Path != "../../examples/egressd.toml" {
		t.Errorf("path = %q", cfg.Path)
	}
	checkSandbox(t, cfg, "sb1", "veth-sb1", "custom", "10.231.0.2/32", "fd00:231::2/128")
	checkSandbox(t, cfg, "sb2", "veth-sb2", "deny-all", "10.232.0.2/32", "fd00:232::2/128")
	if n := len(cfg.Sandboxes.All()); n != 3 {
		t.Errorf("%d sandboxes, want 3", n)
	}
	if agent, ok := cfg.Sandboxes.ByName("agent"); !ok || len(agent.Listen) != 2 || agent.Interface != "" ||
		agent.Listen[1].String() != "unix:/run/egressd/agent.sock" || agent.Listen[1].Mode != 0o600 {
		t.Errorf("explicit proxy sandbox agent: %+v", agent)
	}
	sb1, _ := cfg.Sandboxes.ByName("sb1")
	spec := sb1.Policy.Spec()
	if len(spec.AllowDomains) != 2 || len(spec.AllowCIDRs) != 2 || len(spec.DenyCIDRs) != 1 {
		t.Errorf("sb1 spec = %+v", spec)
	}
	if sb, ok := cfg.Sandboxes.BySource(netip.MustParseAddr("fd00:232::2")); !ok || sb.Name != "sb2" {
		t.Errorf("BySource(fd00:232::2) = %v, %v; want sb2", sb, ok)
	}
}

func checkSandbox(t *testing.T, cfg *Config, name, iface, mode string, sources ...string) {
	t.Helper()
	sb, ok := cfg.Sandboxes.ByName(name)
	if !ok {
		t.Fatalf("sandbox %q missing", name)
	}
	if sb.Interface != iface || string(sb.Policy.Mode()) != mode {
		t.Errorf("sandbox %q: interface %q mode %q, want %q %q", name, sb.Interface, sb.Policy.Mode(), iface, mode)
	}
	var got []string
	for _, p := range sb.Sources {
		got = append(got, p.String())
	}
	if !reflect.DeepEqual(got, sources) {
		t.Errorf("sandbox %q: sources %v, want %v", name, got, sources)
	}
}

// minimal is the smallest valid config: every other key takes its default.
const minimal = `
[proxy]
upstream_dns = ["198.51.100.53"]

[[sandbox]]
name = "sb1"
interface = "veth-sb1"
sources = ["10.231.0.2"]
mode = "allow-all"
`

func TestDefaults(t *testing.T) {
	cfg, err := Parse("minimal.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Path: "minimal.toml",
		Proxy: Proxy{
			TProxyPort:             DefaultTProxyPort,
			DNSPort:                DefaultDNSPort,
			UpstreamDNS:            []netip.AddrPort{netip.MustParseAddrPort("198.51.100.53:53")},
			PeekTimeout:            5 * time.Second,
			DialTimeout:            5 * time.Second,
			ShutdownTimeout:        10 * time.Second,
			IdleTimeout:            time.Hour,
			MaxConnsPerSandbox:     DefaultMaxConnsPerSandbox,
			MaxPeekBytesPerSandbox: DefaultMaxPeekBytesPerSb,
			MaxPeekBytes:           DefaultMaxPeekBytes,
		},
		Admin: Admin{Socket: DefaultAdminSocket},
		State: State{Dir: DefaultStateDir},
		DNS: DNS{
			MinBindingTTL:         time.Hour,
			BlockPrivateAnswers:   true,
			CacheSize:             DefaultCacheSize,
			MaxBindingsPerSandbox: DefaultMaxBindingsPerSandbox,
		},
		Host:      Host{ProtectHost: true, IsolateSandboxes: true, Reject: RejectICMP},
		Sandboxes: cfg.Sandboxes,
	}
	if !reflect.DeepEqual(*cfg, want) {
		t.Errorf("got  %+v\nwant %+v", *cfg, want)
	}
	checkSandbox(t, cfg, "sb1", "veth-sb1", "allow-all", "10.231.0.2/32")
}

func TestParseUpstream(t *testing.T) {
	tests := []struct {
		name, in, want string // want "" = rejected
	}{
		{"ipv4 without port", "198.51.100.53", "198.51.100.53:53"},
		{"ipv4 with port", "198.51.100.53:5353", "198.51.100.53:5353"},
		{"bare ipv6", "2001:db8::53", "[2001:db8::53]:53"},
		{"bracketed ipv6 without port", "[2001:db8::53]", "[2001:db8::53]:53"},
		{"bracketed ipv6 with port", "[2001:db8::53]:5353", "[2001:db8::53]:5353"},
		{"mapped ipv4 is unmapped", "[::ffff:198.51.100.53]:53", "198.51.100.53:53"},
		{"name", "dns.example:53", ""},
		{"port zero", "198.51.100.53:0", ""},
		{"port too big", "198.51.100.53:65536", ""},
		{"unspecified", "0.0.0.0:53", ""},
		{"unspecified without port", "::", ""},
		{"empty", "", ""},
		{"garbage", "[2001:db8::53", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ap, msg := parseUpstream(tt.in)
			switch {
			case tt.want == "" && msg == "":
				t.Errorf("parseUpstream(%q) = %v, want an error", tt.in, ap)
			case tt.want != "" && msg != "":
				t.Errorf("parseUpstream(%q): %s", tt.in, msg)
			case tt.want != "" && ap.String() != tt.want:
				t.Errorf("parseUpstream(%q) = %v, want %s", tt.in, ap, tt.want)
			}
		})
	}
}

func TestListenAddr(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"127.0.0.1:9464", true},
		{"[::1]:9464", true},
		{":9464", true},
		{"localhost:9464", true},
		{"127.0.0.1", false},
		{"127.0.0.1:0", false},
		{"metrics.example:9464", false},
		{"127.0.0.1:http", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if msg := checkListenAddr(tt.in); (msg == "") != tt.ok {
				t.Errorf("checkListenAddr(%q) = %q, want ok=%v", tt.in, msg, tt.ok)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.toml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(absent) = %v, want ErrNotExist", err)
	}
}

// Sandboxes on one bridge share its name as interface; their sources
// tell them apart.
func TestSharedInterface(t *testing.T) {
	cfg, err := Parse("shared.toml", []byte(`
[proxy]
upstream_dns = ["198.51.100.53:53"]

[[sandbox]]
name = "a"
interface = "br-sb"
sources = ["172.18.0.2/32"]
mode = "allow-all"

[[sandbox]]
name = "b"
interface = "br-sb"
sources = ["172.18.0.3/32"]
mode = "deny-all"
`))
	if err != nil {
		t.Fatal(err)
	}
	checkSandbox(t, cfg, "a", "br-sb", "allow-all", "172.18.0.2/32")
	checkSandbox(t, cfg, "b", "br-sb", "deny-all", "172.18.0.3/32")
}

// Explicit-proxy keys: each mistake is refused with the field and value.
func TestListenErrors(t *testing.T) {
	base := "[proxy]\nupstream_dns = [\"198.51.100.53:53\"]\n"
	sb := func(body string) string {
		return base + "[[sandbox]]\nname = \"agent\"\nmode = \"custom\"\n" + body + "\n"
	}
	for _, tc := range []struct{ cfg, want string }{
		{sb(`listen = ["localhost:1080"]`), `listen[0] "localhost:1080": want ip:port`},
		{sb(`listen = ["unix:run/agent.sock"]`), `listen[0] "unix:run/agent.sock": want unix:/an/absolute/clean/path`},
		{sb(`listen = ["127.0.0.1:1080", "127.0.0.1:1080"]`), `listen[1] "127.0.0.1:1080": listed twice`},
		{sb("listen = [\"127.0.0.1:1080\"]\nlisten_auth = \"agent:plain\""), `listen_auth: user "agent": the password hash is not bcrypt`},
		{sb("listen = [\"unix:/tmp/a.sock\"]\nlisten_mode = \"999\""), `listen_mode "999": want an octal file mode`},
		{sb("listen = [\"unix:/tmp/a.sock\"]\nlisten_owner = \"no-such-user-egressd\""), `listen_owner "no-such-user-egressd": no such user or group`},
		{sb(`listen_auth = "a:b"`), `listen_auth needs listen`},
		{sb("listen = [\"unix:/tmp/a.sock\"]\nlisten_auth = \"agent:$2y$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBEjmi\""), `listen_auth applies to TCP listeners`},
		{sb(""), `interface is required`},
		{sb(`listen = ["127.0.0.1:1080"]`) + "[[sandbox]]\nname = \"b\"\nmode = \"deny-all\"\nlisten = [\"127.0.0.1:1080\"]\n",
			`sandbox "b": listen[0] "127.0.0.1:1080": already the listener of sandbox "agent"`},
	} {
		_, err := Parse("x.toml", []byte(tc.cfg))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s\ngot %v\nwant %q", tc.cfg, err, tc.want)
		}
	}
	cfg, err := Parse("x.toml", []byte(sb(`listen = ["127.0.0.1:1080", "[::1]:1080", "unix:/tmp/agent.sock"]`)))
	if err != nil {
		t.Fatal(err)
	}
	agent, _ := cfg.Sandboxes.ByName("agent")
	if len(agent.Listen) != 3 || agent.Listen[1].Address != "[::1]:1080" || len(agent.Sources) != 0 {
		t.Errorf("listeners %+v", agent.Listen)
	}
}
