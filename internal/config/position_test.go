package config

import "testing"

const positionSource = `# comment [proxy]
title = "x"
[proxy] # the proxy
upstream_dns = [
  "198.51.100.53",
  '198.51.100.54',
  "[x]", # a string that looks like a header
]
"dns_port" = 15053
notes = """
[[sandbox]]
name = "not a key"
"""

[[sandbox]]
name = "sb1"
sources = ["10.0.0.1/32", "10.0.0.2/32"]

[ sandbox.extra ]
key = 1

[[sandbox]]
name = "sb2"
  mode   =   "custom"
state.dir = "/x"
`

func TestSourceIndex(t *testing.T) {
	src := newSourceIndex([]byte(positionSource))
	tests := []struct {
		name  string
		path  string
		sb    int
		value string // for elemLine
		want  int
	}{
		{"top-level key", "title", -1, "", 2},
		{"table header", "proxy", -1, "", 3},
		{"key spanning lines", "proxy.upstream_dns", -1, "", 4},
		{"list element", "proxy.upstream_dns", -1, "198.51.100.53", 5},
		{"single-quoted list element", "proxy.upstream_dns", -1, "198.51.100.54", 6},
		{"element not found falls back to key", "proxy.upstream_dns", -1, "192.0.2.1", 4},
		{"quoted key", "proxy.dns_port", -1, "", 9},
		{"multi-line string hides its lines", "sandbox.name", 0, "", 16},
		{"first sandbox header", "sandbox", 0, "", 15},
		{"element on the key's line", "sandbox.sources", 0, "10.0.0.2/32", 17},
		{"sub-table of a sandbox", "sandbox.extra.key", 0, "", 20},
		{"second sandbox", "sandbox.name", 1, "", 23},
		{"spaces around =", "sandbox.mode", 1, "", 24},
		{"dotted key", "sandbox.state.dir", 1, "", 25},
		{"missing key", "sandbox.interface", 1, "", 0},
		{"missing sandbox", "sandbox.name", 2, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := src.line(tt.path, tt.sb)
			if tt.value != "" {
				got = src.elemLine(tt.path, tt.sb, tt.value)
			}
			if got != tt.want {
				t.Errorf("line(%q, %d, %q) = %d, want %d", tt.path, tt.sb, tt.value, got, tt.want)
			}
		})
	}
}

func TestValidVariants(t *testing.T) {
	tests := []struct{ name, src string }{
		{"inline tables", `proxy = { upstream_dns = ["[2001:db8::53]:5353"] }
sandbox = [{ name = "a", interface = "veth-a", sources = ["::ffff:10.0.0.1"], mode = "custom", allow_domains = ["*.x.test"] }]`},
		{"dotted keys", `proxy.upstream_dns = ["2001:db8::53"]
admin.metrics = ":9464"
[[sandbox]]
name = "sb1"
interface = "veth-sb1"
sources = ["10.0.0.0/8"]
mode = "allow-all"
deny_cidrs = ["198.51.100.128/25"]`},
		{"empty lists in deny-all", `[proxy]
upstream_dns = ["198.51.100.53"]
[[sandbox]]
name = "sb1"
interface = "veth-sb1"
sources = ["10.0.0.1"]
mode = "deny-all"
allow_domains = []
deny_cidrs = []`},
		{"overlap inside one sandbox", `[proxy]
upstream_dns = ["198.51.100.53"]
[[sandbox]]
name = "sb1"
interface = "veth-sb1"
sources = ["10.0.0.0/24", "10.0.0.1"]
mode = "custom"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse("v.toml", []byte(tt.src)); err != nil {
				t.Error(err)
			}
		})
	}
}
