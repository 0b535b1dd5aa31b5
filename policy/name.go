package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"
)

// Two kinds of names reach this package:
//
//   - wire names, carried by a sandbox's flows (TLS SNI, HTTP Host, DNS
//     question). They are hostile input and are validated strictly, without
//     allocating: ASCII letters, digits, '-' and '_' only.
//   - patterns, written by the user in allow_domains. They may be
//     internationalised and are forgiving about case and a trailing dot, but
//     refuse anything that could not mean what the user thinks.
//
// Both end up in the same normal form — lowercase ASCII, punycode for IDNs,
// no trailing dot — so matching is plain string comparison on whole labels.

// Limits from RFC 1035 section 2.3.4, counted without the root label.
const (
	maxNameLen  = 253
	maxLabelLen = 63
)

var (
	errNameEmpty  = errors.New("empty name")
	errNameLong   = errors.New("name longer than 253 octets")
	errLabelEmpty = errors.New("empty label")
	errLabelLong  = errors.New("label longer than 63 octets")
	errNameChar   = errors.New("invalid character (names hold ASCII letters, digits, '-', '_' and dots)")
	errIPLiteral  = errors.New("an IP address, not a name")
	errNumericTLD = errors.New("the last label is numeric, so resolvers may read the name as an IP address")

	errPatternEmpty = errors.New("empty pattern")
	errPatternIP    = fmt.Errorf("%w; put addresses in allow_cidrs", errIPLiteral)
	errPatternURL   = errors.New(`a URL, not a host name; write only the name, e.g. "api.example.com"`)
	errPatternPort  = errors.New("ports follow the name once, as one list: name:443 or name:22,443")
	errWildcard     = errors.New("a wildcard may only be the whole leftmost label")
	errWildcardBare = errors.New(`a wildcard needs a name after it, e.g. "*.example.com"`)
	errPatternLong  = errors.New("pattern longer than 253 octets")
)

// nameInfo is what checkName learns about a valid wire name.
type nameInfo struct {
	name   string // the input without its trailing dot
	labels int    // how many labels name has
	upper  bool   // name holds upper-case letters
}

// NormalizeName validates a name carried by a flow (TLS SNI, HTTP Host, DNS
// question) and returns it in normal form: lowercase, one trailing dot
// removed. A name already in normal form is returned as is, without
// allocating. Refused: anything but ASCII letters, digits, '-', '_' and dots;
// empty labels; labels over 63 and names over 253 octets; IP literals (IPv4,
// IPv6, bracketed IPv6) and names whose last label is numeric, which
// resolvers may read as an IPv4 address ("10.1", "0x7f000001").
func NormalizeName(s string) (string, error) {
	info, at, err := checkName(s)
	if err != nil {
		return "", explainName(s, at, err)
	}
	if info.upper {
		return strings.ToLower(info.name), nil
	}
	return info.name, nil
}

// explainName turns a checkName error about s into a user-facing one:
// IP literals named as such, the offending character shown. checkName
// itself does neither, as that would allocate.
func explainName(s string, at int, err error) error {
	if isIPLiteral(strings.TrimSuffix(s, ".")) {
		return errIPLiteral
	}
	if errors.Is(err, errNameChar) {
		return fmt.Errorf("%w: %q at offset %d", err, s[at], at)
	}
	return err
}

// checkName validates a wire name without allocating. With errNameChar, at
// is the index of the offending byte in s. IP literals fail with
// errNameChar (IPv6) or errNumericTLD (IPv4); explainName tells them apart.
func checkName(s string) (info nameInfo, at int, err error) {
	if s == "" {
		return info, 0, errNameEmpty
	}
	if s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	if len(s) > maxNameLen {
		return info, 0, errNameLong
	}
	start := 0 // of the current label
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		case 'A' <= c && c <= 'Z':
			info.upper = true
		case c == '.':
			if err := checkLabel(i - start); err != nil {
				return info, 0, err
			}
			info.labels++
			start = i + 1
		default:
			return info, i, errNameChar
		}
	}
	if err := checkLabel(len(s) - start); err != nil {
		return info, 0, err
	}
	if isNumericLabel(s[start:]) {
		return info, 0, errNumericTLD
	}
	info.name, info.labels = s, info.labels+1
	return info, 0, nil
}

func checkLabel(n int) error {
	switch {
	case n == 0:
		return errLabelEmpty
	case n > maxLabelLen:
		return errLabelLong
	}
	return nil
}

// isIPLiteral reports whether s is an IP address, IPv6 ones possibly in
// brackets as in a URL's host.
func isIPLiteral(s string) bool {
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		s = s[1 : len(s)-1]
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}

// isNumericLabel reports whether a last label makes a name an IPv4 address
// to inet_aton and the WHATWG URL parser: decimal digits, or "0x" and hex.
func isNumericLabel(l string) bool {
	if len(l) >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X') {
		for i := 2; i < len(l); i++ {
			if !isHex(l[i]) {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// ParsePattern validates an allow_domains entry and returns it in normal
// form. "api.example.com" matches that name only; "*.example.com" matches
// every name below example.com at any depth, but not example.com itself;
// "*" matches every name. Case and one trailing dot are ignored;
// internationalised labels become punycode ("bücher.test" →
// "xn--bcher-kva.test"). Refused with a reason: a '*' anywhere but as the
// whole leftmost label, empty or over-long labels and names, characters
// NormalizeName refuses, a numeric last label, IP addresses (they go in
// allow_cidrs), ports and URLs. The error is the bare reason;
// callers add the field and value (FieldError).
func ParsePattern(s string) (string, error) {
	switch {
	case s == "":
		return "", errPatternEmpty
	case s == "*":
		return s, nil
	case strings.Contains(s, "://") || strings.ContainsAny(s, "/?#"):
		return "", errPatternURL
	case isIPLiteral(strings.TrimSuffix(s, ".")):
		return "", errPatternIP
	}
	if host, ok := cutPort(s); ok {
		if isIPLiteral(host) {
			return "", errPatternIP
		}
		return "", errPatternPort
	}
	return parsePatternName(s)
}

// ParseDomainEntry reads an allow_domains entry: a pattern (ParsePattern),
// optionally with the ports it applies to ("api.example.com:443",
// "git.example.com:22,443", "*.example.com:8000-8100"; nil ports: every
// port).
func ParseDomainEntry(s string) (string, PortSet, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 || strings.Contains(s, "://") || strings.ContainsAny(s, "/?#") {
		pat, err := ParsePattern(s) // no ports, or a URL: ParsePattern says what is wrong
		return pat, nil, err
	}
	if isIPLiteral(strings.Trim(s[:i], "[]")) || isIPLiteral(s) {
		return "", nil, errPatternIP
	}
	pat, err := ParsePattern(s[:i])
	if err != nil {
		return "", nil, err
	}
	ports, err := ParsePorts(s[i+1:])
	return pat, ports, err
}

// parsePatternName is ParsePattern past its checks for URLs, addresses
// and ports.
func parsePatternName(s string) (string, error) {
	rest, wild := strings.CutPrefix(s, "*.")
	switch {
	case strings.Contains(rest, "*"):
		return "", errWildcard
	case wild && (rest == "" || rest == "."):
		return "", errWildcardBare
	}
	name, err := normalizePatternName(rest)
	if err != nil {
		return "", err
	}
	switch {
	case !wild:
		return name, nil
	case len(name)+2 > maxNameLen: // nothing below name fits in 253 octets
		return "", errPatternLong
	case name == rest:
		return s, nil // already normal: no allocation
	}
	return "*." + name, nil
}

// cutPort returns the host of "host:port" when s ends in a numeric port.
func cutPort(s string) (host string, ok bool) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 || i == len(s)-1 {
		return "", false
	}
	for j := i + 1; j < len(s); j++ {
		if s[j] < '0' || s[j] > '9' {
			return "", false
		}
	}
	return s[:i], true
}

// normalizePatternName turns a pattern's name part into normal form.
func normalizePatternName(s string) (string, error) {
	if !isASCII(s) {
		var err error
		if s, err = toASCII(s); err != nil {
			return "", err
		}
	}
	info, at, err := checkName(s)
	switch {
	case err == nil:
	case isIPLiteral(strings.TrimSuffix(s, ".")):
		return "", errPatternIP
	case errors.Is(err, errNameChar):
		return "", fmt.Errorf("%w: %q", err, s[at])
	default:
		return "", err
	}
	if info.upper {
		return strings.ToLower(info.name), nil
	}
	return info.name, nil
}

// idnaProfile is idna.Lookup (UTS #46 mapping, lowercase, NFC, Bidi rule,
// non-transitional) minus the STD3 rules, so that '_' stays allowed as on
// the wire, and minus the hyphen checks, which browsers do not apply either.
// It only ever sees labels holding non-ASCII runes.
var idnaProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.Transitional(false),
	idna.StrictDomainName(false),
	idna.CheckHyphens(false),
)

// toASCII converts the labels of s that hold non-ASCII runes to punycode;
// ASCII labels are left for checkName, so "xn--" and hyphen rules apply to
// patterns exactly as to wire names.
func toASCII(s string) (string, error) {
	labels := strings.Split(s, ".")
	for i, l := range labels {
		if isASCII(l) {
			continue
		}
		a, err := idnaProfile.ToASCII(l)
		if err != nil {
			return "", fmt.Errorf("invalid internationalised label %q: %w", l, err)
		}
		labels[i] = a
	}
	return strings.Join(labels, "."), nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
