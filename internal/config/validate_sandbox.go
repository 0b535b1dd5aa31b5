package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode"

	"github.com/gaissmai/bart"

	"github.com/egressd/egressd/policy"
)

// sandboxes validates every [[sandbox]] and then the rules between them:
// unique names, one sandbox per interface, no source in two sandboxes.
// Sandboxes that failed to decode were reported already and are skipped.
func (v *validator) sandboxes(fs []fileSandbox, guarded []string) []policy.Sandbox {
	if len(fs) == 0 {
		if !v.badSandboxes {
			v.errs.add(0, "", errors.New("no [[sandbox]] defined: egressd would intercept nothing"))
		}
		return nil
	}
	out := make([]policy.Sandbox, 0, len(fs))
	u := uniqueness{names: map[string]int{}, listen: map[string]int{}}
	for i := range fs {
		f := &fs[i]
		if v.broken[i] {
			continue
		}
		sb := v.sandbox(i, f, Host{SandboxInterfaces: guarded})
		v.unique(&u, i, f, fs)
		out = append(out, sb)
	}
	return out
}

// sbBad records a problem with key of sandbox i; the line is the key's,
// or the [[sandbox]] header's when the key is not in the file.
func (v *validator) sbBad(i int, f *fileSandbox, key string, err error) {
	line := v.src.line("sandbox."+key, i)
	if line == 0 {
		line = v.src.line("sandbox", i)
	}
	v.errs.add(line, sandboxLabel(i, f.Name), err)
}

// sbElemBad records a problem with element j of the list key.
func (v *validator) sbElemBad(i int, f *fileSandbox, key string, j int, value string, err error) {
	fe := &policy.FieldError{Field: key, Index: j, Value: value, Err: err}
	v.sbFieldError(i, f, fe)
}

func (v *validator) sbFieldError(i int, f *fileSandbox, fe *policy.FieldError) {
	line := v.src.elemLine("sandbox."+fe.Field, i, fe.Value)
	if line == 0 {
		line = v.src.line("sandbox", i)
	}
	v.errs.add(line, sandboxLabel(i, f.Name), fe)
}

// sandbox validates one sandbox on its own.
func (v *validator) sandbox(i int, f *fileSandbox, host Host) policy.Sandbox {
	if msg := checkSandboxName(f.Name); msg != "" {
		v.sbBad(i, f, "name", fieldMsg("name", f.Name, msg))
	}
	sb := policy.Sandbox{Name: f.Name, Listen: v.listeners(i, f)}
	if f.Interface != "" || len(f.Sources) > 0 || len(f.Listen) == 0 {
		// A sandbox reached through the kernel; one with only listen
		// is an explicit proxy's.
		if msg := checkInterface(f.Interface); msg != "" {
			v.sbBad(i, f, "interface", fieldMsg("interface", f.Interface, msg))
		} else if len(host.SandboxInterfaces) > 0 && !host.Guards(f.Interface) {
			v.sbBad(i, f, "interface", stringValue("interface", f.Interface,
				"does not match host.sandbox_interfaces "+quoteList(host.SandboxInterfaces)+": a sandbox interface must be guarded"))
		}
		sb.Interface, sb.Sources = f.Interface, v.sources(i, f)
	}
	sb.Policy = v.policy(i, f)
	return sb
}

// fieldMsg is `key "value": msg`, or `key is required` for an empty value.
func fieldMsg(key, value, msg string) error {
	if value == "" {
		return errors.New(key + " is required")
	}
	return stringValue(key, value, msg)
}

func (v *validator) sources(i int, f *fileSandbox) []netip.Prefix {
	if len(f.Sources) == 0 {
		v.sbBad(i, f, "sources", errors.New("sources is required: the addresses the sandbox's packets come from"))
		return nil
	}
	out := make([]netip.Prefix, 0, len(f.Sources))
	for j, s := range f.Sources {
		p, err := parseSource(s)
		if err != nil {
			v.sbElemBad(i, f, "sources", j, s, err)
			continue
		}
		out = append(out, p)
	}
	return out
}

var errNotSource = errors.New("not an IP address or CIDR prefix")

// parseSource is policy.ParsePrefix, whose hint for a name ("names go in
// allow_domains") fits the allow lists but not sources.
func parseSource(s string) (netip.Prefix, error) {
	p, err := policy.ParsePrefix(s)
	if err == nil {
		return p, nil
	}
	addr, _, _ := strings.Cut(s, "/")
	if _, aerr := netip.ParseAddr(addr); aerr != nil && !strings.Contains(addr, "%") && addr != "" {
		return p, errNotSource
	}
	return p, err
}

// policy checks the mode, which lists that mode allows, then compiles.
func (v *validator) policy(i int, f *fileSandbox) *policy.Policy {
	if f.Mode == "" {
		v.sbBad(i, f, "mode", errors.New("mode is required: allow-all, deny-all or custom"))
		return nil
	}
	mode, err := policy.ParseMode(f.Mode)
	if err != nil {
		v.sbBad(i, f, "mode", stringValue("mode", f.Mode, "must be allow-all, deny-all or custom"))
		return nil
	}
	spec := policy.Spec{Mode: mode, AllowDomains: f.AllowDomains, AllowCIDRs: f.AllowCIDRs, DenyCIDRs: f.DenyCIDRs, Audit: f.Audit}
	if les := spec.ListErrors(); len(les) > 0 {
		for _, le := range les {
			v.sbBad(i, f, le.Field, le)
		}
		return nil
	}
	p, err := policy.Compile(spec)
	if err != nil {
		var fe *policy.FieldError
		if errors.As(err, &fe) {
			v.sbFieldError(i, f, fe)
		} else {
			v.sbBad(i, f, "mode", err)
		}
		return nil
	}
	return p
}

// maxNameLen bounds sandbox names: they appear in log lines, metric
// labels, admin API paths and kernel rule comments.
const maxNameLen = 63

func checkSandboxName(s string) string {
	if s == "" || len(s) > maxNameLen {
		return "must be 1..63 characters"
	}
	for j, r := range s {
		alnum := r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r))
		if !alnum && (j == 0 || !strings.ContainsRune("._-", r)) {
			return "may only hold ASCII letters, digits, '.', '_' and '-', and must start with a letter or digit"
		}
	}
	return ""
}

// CheckInterface reports why s cannot be a sandbox interface, or nil:
// the rules a [[sandbox]] interface meets.
func CheckInterface(s string) error {
	if msg := checkInterface(s); msg != "" {
		return fmt.Errorf("interface %q: %s", s, msg)
	}
	return nil
}

// checkInterface applies the kernel's rules for interface names
// (dev_valid_name: 1..15 bytes, not "." or "..", no '/', ':' or
// whitespace) and refuses the loopback interface.
func checkInterface(s string) string {
	switch {
	case s == "" || len(s) > 15:
		return "must be 1..15 bytes (IFNAMSIZ)"
	case s == "." || s == "..":
		return "is not an interface name"
	case s == "lo":
		return "the loopback interface cannot be a sandbox interface"
	}
	for _, r := range s {
		// '*' would make the name a pattern in the kernel rules (it would
		// guard, or open, other interfaces); '"' and '\\' cannot be quoted
		// there.
		if r == '/' || r == ':' || r == '*' || r == '"' || r == '\\' || r > unicode.MaxASCII || unicode.IsSpace(r) || unicode.IsControl(r) {
			return "must not contain '/', ':', '*', '\"', '\\', whitespace, control or non-ASCII characters"
		}
	}
	return ""
}

// uniqueness remembers, across sandboxes, who holds each name and source
// prefix. Sandboxes may share an interface (a bridge): their sources tell
// them apart.
type uniqueness struct {
	names   map[string]int
	listen  map[string]int         // listener → sandbox index
	sources bart.Table[heldSource] // every source so far, to find overlaps in O(log n)
}

type heldSource struct {
	sandbox int
	index   int
	value   string
	prefix  netip.Prefix
}

func (v *validator) unique(u *uniqueness, i int, f *fileSandbox, fs []fileSandbox) {
	if j, dup := u.names[f.Name]; dup && f.Name != "" {
		v.sbBad(i, f, "name", stringValue("name", f.Name, "already used by sandbox #"+strconv.Itoa(j+1)+v.atLine("sandbox.name", j)))
	} else {
		u.names[f.Name] = i
	}
	for k, s := range f.Listen {
		l, err := parseListen(s)
		if err != nil {
			continue // reported by listeners
		}
		if j, dup := u.listen[l.String()]; dup && j != i {
			v.sbElemBad(i, f, "listen", k, s, fmt.Errorf("already the listener of sandbox %s", quoteLabel(j, fs[j].Name)))
		} else {
			u.listen[l.String()] = i
		}
	}
	for k, s := range f.Sources {
		p, err := parseSource(s)
		if err != nil {
			continue // reported by sources
		}
		if h, ok := u.overlap(i, p); ok {
			v.sbElemBad(i, f, "sources", k, s, fmt.Errorf("overlaps sources[%d] %q of sandbox %s",
				h.index, h.value, quoteLabel(h.sandbox, fs[h.sandbox].Name)))
		}
		if _, dup := u.sources.Get(p); !dup {
			u.sources.Insert(p, heldSource{sandbox: i, index: k, value: s, prefix: p})
		}
	}
}

// overlap finds a source of another sandbox than i that shares addresses
// with p: one that contains p or lies inside it.
func (u *uniqueness) overlap(i int, p netip.Prefix) (heldSource, bool) {
	for _, h := range u.sources.Supernets(p) {
		if h.sandbox != i {
			return h, true
		}
	}
	for _, h := range u.sources.Subnets(p) {
		if h.sandbox != i {
			return h, true
		}
	}
	return heldSource{}, false
}

// atLine is " at line N" for path in sandbox sb, or "" when unknown.
func (v *validator) atLine(path string, sb int) string {
	if n := v.src.line(path, sb); n > 0 {
		return " at line " + strconv.Itoa(n)
	}
	return ""
}

// quoteList is a TOML-looking list: ["a", "b*"].
func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// quoteLabel names sandbox i in a message: "sb1" (quoted) or #2.
func quoteLabel(i int, name string) string {
	if name == "" {
		return "#" + strconv.Itoa(i+1)
	}
	return strconv.Quote(name)
}
