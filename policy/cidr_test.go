package policy

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParsePrefix(t *testing.T) {
	tests := []struct {
		name, in, want, err string
	}{
		{"IPv4", "198.51.100.0/24", "198.51.100.0/24", ""},
		{"IPv6", "2001:db8::/32", "2001:db8::/32", ""},
		{"bare IPv4 is /32", "198.51.100.77", "198.51.100.77/32", ""},
		{"bare IPv6 is /128", "2001:db8::77", "2001:db8::77/128", ""},
		{"default route v4", "0.0.0.0/0", "0.0.0.0/0", ""},
		{"default route v6", "::/0", "::/0", ""},
		{"mapped prefix is IPv4", "::ffff:10.0.0.0/104", "10.0.0.0/8", ""},
		{"mapped address is IPv4", "::ffff:1.2.3.4", "1.2.3.4/32", ""},
		{"mapped /96 is all IPv4", "::ffff:0.0.0.0/96", "0.0.0.0/0", ""},
		{"mapped shorter than /96", "::ffff:0:0/95", "", "/96 or longer"},
		{"host bits v4", "10.0.0.1/8", "", "host bits set; did you mean 10.0.0.0/8?"},
		{"host bits v6", "2001:db8::1/32", "", "host bits set; did you mean 2001:db8::/32?"},
		{"host bits mapped", "::ffff:10.0.0.1/104", "", "did you mean 10.0.0.0/8?"},
		{"length too long v4", "10.0.0.0/33", "", "invalid prefix length (IPv4 allows /0 to /32)"},
		{"length too long v6", "2001:db8::/129", "", "invalid prefix length (IPv6 allows /0 to /128)"},
		{"length leading zero", "10.0.0.0/08", "", "invalid prefix length"},
		{"length sign", "10.0.0.0/+8", "", "invalid prefix length"},
		{"length empty", "10.0.0.0/", "", "invalid prefix length"},
		{"zone", "fe80::1%eth0", "", "zone"},
		{"zone with length", "fe80::%eth0/64", "", "zone"},
		{"name", "example.com", "", "names go in allow_domains"},
		{"empty", "", "", "empty prefix"},
		{"spaces", " 10.0.0.0/8", "", "not an IP address"},
		{"bracketed", "[2001:db8::1]", "", "not an IP address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePrefix(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParsePrefix(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != netip.MustParsePrefix(tt.want) {
				t.Fatalf("ParsePrefix(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
			}
		})
	}
}
