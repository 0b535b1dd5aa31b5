package policy

import (
	"strings"
	"testing"
)

func TestParsePorts(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"443", "443", ""},
		{"443,22", "22,443", ""},
		{"8000-8100,8050,8101", "8000-8101", ""},
		{"1-65535", "1-65535", ""},
		{"0", "", "port must be 1..65535"},
		{"99999", "", "port must be 1..65535"},
		{"80-70", "", "must go up"},
		{"", "", "want ports"},
		{"a", "", "want ports"},
		{"22,", "", "want ports"},
	} {
		got, err := ParsePorts(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParsePorts(%q) = %v, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("ParsePorts(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// A name with ports allows only those; a broader entry without ports
// still allows the rest; DNS (port 0) asks whether any port is allowed.
func TestDomainPorts(t *testing.T) {
	p := mustCompile(t, Spec{Mode: ModeCustom, AllowDomains: []string{
		"api.example.test:443", "git.example.test:22,443", "*.files.example.test:8000-8100",
		"open.example.test", "api.example.test:8443", "Mixed.Example.Test:80",
	}})
	for _, tc := range []struct {
		name string
		port uint16
		rule string // "" for a denial
	}{
		{"api.example.test", 443, "allow_domains api.example.test:443,8443"},
		{"api.example.test", 8443, "allow_domains api.example.test:443,8443"},
		{"api.example.test", 80, ""},
		{"api.example.test", 0, "allow_domains api.example.test:443,8443"},
		{"git.example.test", 22, "allow_domains git.example.test:22,443"},
		{"git.example.test", 23, ""},
		{"a.files.example.test", 8050, "allow_domains *.files.example.test:8000-8100"},
		{"a.files.example.test", 443, ""},
		{"open.example.test", 5432, "allow_domains open.example.test"},
		{"mixed.example.test", 80, "allow_domains mixed.example.test:80"},
	} {
		d := p.DecideNamePort(tc.name, tc.port)
		if got := d.Rule(); (tc.rule == "") == d.Allowed() || got != tc.rule {
			t.Errorf("DecideNamePort(%q, %d) = %v (rule %q), want rule %q", tc.name, tc.port, d, got, tc.rule)
		}
	}
	want := "api.example.test:443,8443 git.example.test:22,443 *.files.example.test:8000-8100 open.example.test mixed.example.test:80"
	if got := strings.Join(p.Spec().AllowDomains, " "); got != want {
		t.Errorf("Spec().AllowDomains = %q, want %q", got, want)
	}
	// The more specific entry's ports do not hide a broader entry's.
	q := mustCompile(t, Spec{Mode: ModeCustom, AllowDomains: []string{"api.example.test:443", "*.example.test"}})
	if d := q.DecideNamePort("api.example.test", 22); !d.Allowed() || d.Pattern != "*.example.test" {
		t.Errorf("port 22 with a wildcard for every port: %v", d)
	}
	// A pattern for every port absorbs one with ports.
	r := mustCompile(t, Spec{Mode: ModeCustom, AllowDomains: []string{"a.test:443", "a.test"}})
	if got := r.Spec().AllowDomains; len(got) != 1 || got[0] != "a.test" {
		t.Errorf("merged entries %q, want [a.test]", got)
	}
}

func TestDomainPortErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"db.example.com:99999", `allow_domains[0] "db.example.com:99999": port must be 1..65535`},
		{"db.example.com:0", "port must be 1..65535"},
		{"db.example.com:", "want ports"},
		{"198.51.100.7:443", "address"},
		{"[2001:db8::1]:443", "address"},
		{"db.example.com:22,x", "want ports"},
	} {
		_, err := Compile(Spec{Mode: ModeCustom, AllowDomains: []string{tc.in}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
}
