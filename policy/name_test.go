package policy

import (
	"strings"
	"testing"
)

func TestNormalizeName(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	name253 := strings.Repeat(long63+".", 3) + strings.Repeat("b", 61) // 4*63+... = 253
	tests := []struct {
		name, in, want, err string
	}{
		{"lowercase as is", "api.example.com", "api.example.com", ""},
		{"upper case folded", "API.Example.COM", "api.example.com", ""},
		{"one trailing dot trimmed", "a.test.", "a.test", ""},
		{"two trailing dots refused", "a.test..", "", "empty label"},
		{"underscore", "_dmarc.example.com", "_dmarc.example.com", ""},
		{"hyphens anywhere", "-a-.b--c.test", "-a-.b--c.test", ""},
		{"single label", "localhost", "localhost", ""},
		{"digits in labels", "1a.2b.test", "1a.2b.test", ""},
		{"punycode kept", "xn--bcher-kva.test", "xn--bcher-kva.test", ""},
		{"63-octet label", long63 + ".test", long63 + ".test", ""},
		{"64-octet label", long63 + "a.test", "", "label longer than 63"},
		{"253-octet name", name253, name253, ""},
		{"253-octet name with dot", name253 + ".", name253, ""},
		{"254-octet name", name253 + "b", "", "longer than 253"},
		{"empty", "", "", "empty name"},
		{"root only", ".", "", "empty label"},
		{"leading dot", ".a.test", "", "empty label"},
		{"inner empty label", "a..test", "", "empty label"},
		{"IPv4 literal", "198.51.100.1", "", "IP address"},
		{"IPv4 literal with dot", "198.51.100.1.", "", "IP address"},
		{"IPv6 literal", "2001:db8::1", "", "IP address"},
		{"bracketed IPv6", "[2001:db8::1]", "", "IP address"},
		{"mapped IPv6", "::ffff:198.51.100.1", "", "IP address"},
		{"short IPv4 form", "10.1", "", "numeric"},
		{"hex IPv4 form", "0x7f000001", "", "numeric"},
		{"numeric last label", "a.test.123", "", "numeric"},
		{"numeric inner label ok", "123.test", "123.test", ""},
		{"hex-looking label not last", "0xff.test", "0xff.test", ""},
		{"NUL", "a\x00.test", "", "invalid character"},
		{"backslash", `a\.test`, "", "invalid character"},
		{"space", "a test", "", "invalid character"},
		{"port", "a.test:443", "", "invalid character"},
		{"star", "*.a.test", "", "invalid character"},
		{"non-ASCII", "bücher.test", "", "invalid character"},
		{"percent", "a%2e.test", "", "invalid character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeName(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("NormalizeName(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("NormalizeName(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParsePattern(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	name251 := strings.Repeat(long63+".", 3) + strings.Repeat("b", 59)
	tests := []struct {
		name, in, want, err string
	}{
		{"exact", "api.example.com", "api.example.com", ""},
		{"wildcard", "*.example.com", "*.example.com", ""},
		{"any", "*", "*", ""},
		{"case folded", "API.Example.COM", "api.example.com", ""},
		{"wildcard case folded", "*.Example.COM", "*.example.com", ""},
		{"trailing dot", "a.test.", "a.test", ""},
		{"wildcard trailing dot", "*.a.test.", "*.a.test", ""},
		{"IDN", "bücher.test", "xn--bcher-kva.test", ""},
		{"IDN upper case", "BÜCHER.test", "xn--bcher-kva.test", ""},
		{"IDN wildcard", "*.bücher.test", "*.xn--bcher-kva.test", ""},
		{"IDN ideographic dot", "bücher。test", "xn--bcher-kva.test", ""},
		{"IDN with ASCII hyphens elsewhere", "r3---sn.bücher.test", "r3---sn.xn--bcher-kva.test", ""},
		{"fullwidth ASCII", "ｅｘａｍｐｌｅ.test", "example.test", ""},
		{"underscore", "_srv.a.test", "_srv.a.test", ""},
		{"251-octet wildcard base", "*." + name251, "*." + name251, ""},
		{"wildcard base too long", "*." + name251 + "b", "", "longer than 253"},
		{"inner wildcard", "a.*.b", "", "a wildcard may only be the whole leftmost label"},
		{"glued wildcard", "*example.com", "", "a wildcard may only be the whole leftmost label"},
		{"double star", "**.a", "", "a wildcard may only be the whole leftmost label"},
		{"two wildcards", "*.*.a", "", "a wildcard may only be the whole leftmost label"},
		{"trailing wildcard", "a.*", "", "a wildcard may only be the whole leftmost label"},
		{"empty", "", "", "empty pattern"},
		{"wildcard alone", "*.", "", "a wildcard needs a name after it"},
		{"wildcard and root", "*..", "", "a wildcard needs a name after it"},
		{"empty label", "a..test", "", "empty label"},
		{"leading dot", ".a.test", "", "empty label"},
		{"label too long", long63 + "a.test", "", "label longer than 63"},
		{"IPv4", "198.51.100.7", "", "put addresses in allow_cidrs"},
		{"IPv6", "2001:db8::7", "", "put addresses in allow_cidrs"},
		{"bracketed IPv6", "[2001:db8::7]", "", "put addresses in allow_cidrs"},
		{"IPv4 with port", "198.51.100.7:443", "", "put addresses in allow_cidrs"},
		{"IPv6 with port", "[2001:db8::7]:443", "", "put addresses in allow_cidrs"},
		{"fullwidth IPv4", "１９８.５１.１００.７", "", "put addresses in allow_cidrs"},
		{"numeric TLD", "*.10", "", "numeric"},
		{"port", "a.test:443", "", "ports follow the name once"},
		{"URL", "https://a.test/", "", "a URL"},
		{"path", "a.test/x", "", "a URL"},
		{"query", "a.test?x", "", "a URL"},
		{"space", "a .test", "", "invalid character"},
		{"bad IDN", "a\u200d.test", "", "internationalised"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePattern(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParsePattern(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParsePattern(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			again, err := ParsePattern(got)
			if err != nil || again != got {
				t.Fatalf("ParsePattern(%q) = %q, %v; not idempotent", got, again, err)
			}
		})
	}
}

func TestNormalizeNameNoCopy(t *testing.T) {
	in := "api.example.com"
	got, err := NormalizeName(in)
	if err != nil || got != in {
		t.Fatalf("NormalizeName(%q) = %q, %v", in, got, err)
	}
	if n := testing.AllocsPerRun(100, func() { NormalizeName(in) }); n != 0 {
		t.Fatalf("NormalizeName of a normal name: %v allocs, want 0", n)
	}
}
