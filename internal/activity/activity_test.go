package activity

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/egressd/egressd/policy"
)

// logSome writes decision lines as the proxy, the resolver and the kernel
// loop write them, through log.
func logSome(log *zap.Logger) {
	flow := func(sb, dst, name string, v policy.Verdict, r policy.Reason) {
		log.Info("flow", zap.String("sandbox", sb), zap.Stringer("dst", netip.MustParseAddrPort(dst)),
			zap.String("name", name), zap.Stringer("verdict", v), zap.Stringer("reason", r))
	}
	flow("ci", "198.51.100.10:443", "a.files.example.com", policy.WouldDeny, policy.ReasonNoMatch)
	flow("ci", "198.51.100.11:443", "b.files.example.com", policy.WouldDeny, policy.ReasonNoMatch)
	flow("ci", "198.51.100.11:443", "B.files.example.com", policy.WouldDeny, policy.ReasonNoMatch)
	flow("ci", "198.51.100.12:443", "pypi.org", policy.Allow, policy.ReasonAllowDomain)
	flow("ci", "203.0.113.5:22", "", policy.WouldDeny, policy.ReasonNoName)
	flow("ci", "203.0.113.6:443", "evil.example.net", policy.Deny, policy.ReasonProtectHost)
	flow("ci", "198.51.100.130:443", "inside-deny.example", policy.WouldDeny, policy.ReasonDenyCIDR)
	flow("other", "198.51.100.99:443", "other.example", policy.Allow, policy.ReasonAllowAll)
	log.Info("flow", zap.String("sandbox", ""), zap.String("dst", "198.51.100.1:1"), zap.Stringer("verdict", policy.Deny))
	dns := func(name, rcode string) {
		log.Info("dns query", zap.String("sandbox", "ci"), zap.String("name", name), zap.Stringer("verdict", policy.WouldDeny),
			zap.Stringer("reason", policy.ReasonNoMatch), zap.String("rcode", rcode))
	}
	dns("pypi.org.", "NOERROR")
	dns("ntp.example.org.", "NOERROR")
	dns("pypi.org.localdomain.", "NXDOMAIN")
	log.Warn("kernel report-only", zap.String("sandbox", "ci"), zap.String("dst", "203.0.113.53"), zap.String("proto", "udp"),
		zap.Stringer("verdict", policy.WouldDeny), zap.Stringer("reason", policy.ReasonNoMatch), zap.Uint64("packets", 4))
	log.Warn("kernel report-only", zap.String("sandbox", "ci"), zap.String("dst", "203.0.113.53"), zap.String("proto", "udp"),
		zap.Stringer("verdict", policy.WouldDeny), zap.Stringer("reason", policy.ReasonNoMatch), zap.Uint64("packets", 2))
	log.Info("ready", zap.String("sandbox", "ci"), zap.String("name", "not-a-decision.example"))
}

var wantCI = map[string]Entry{
	"a.files.example.com":  {Flows: 1, WouldDeny: 1},
	"b.files.example.com":  {Flows: 2, WouldDeny: 2},
	"pypi.org":             {Flows: 1, Queries: 1, WouldDeny: 1},
	"ntp.example.org":      {Queries: 1, WouldDeny: 1},
	"pypi.org.localdomain": {FailedQueries: 1, WouldDeny: 1},
	"203.0.113.5":          {Flows: 1, WouldDeny: 1},
	"evil.example.net":     {Denied: 1},
	"inside-deny.example":  {Flows: 1, WouldDeny: 1},
	"203.0.113.53":         {Packets: 6, WouldDeny: 6},
}

func checkCI(t *testing.T, a Activity) {
	t.Helper()
	if len(a.Entries) != len(wantCI) {
		t.Errorf("%d entries, want %d: %+v", len(a.Entries), len(wantCI), a.Entries)
	}
	for _, e := range a.Entries {
		w, ok := wantCI[e.Value]
		if !ok {
			t.Errorf("unexpected entry %+v", e)
			continue
		}
		if e.Flows != w.Flows || e.Queries != w.Queries || e.FailedQueries != w.FailedQueries ||
			e.Packets != w.Packets || e.WouldDeny != w.WouldDeny || e.Denied != w.Denied {
			t.Errorf("entry %s = %+v, want counts %+v", e.Value, e, w)
		}
	}
}

// The daemon's record (through the zap core) and a log file read back
// hold the same activity.
func TestRecordAndLogAgree(t *testing.T) {
	rec := NewRecord()
	var file bytes.Buffer
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey, enc.EncodeTime = "ts", zapcore.ISO8601TimeEncoder
	fileCore := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(&file), zapcore.InfoLevel)
	logSome(zap.New(zapcore.NewTee(fileCore, rec.Core())))

	a, ok := rec.Activity("ci")
	if !ok {
		t.Fatal("no activity recorded for ci")
	}
	checkCI(t, a)
	fromLog, err := ReadLog(&file, "ci")
	if err != nil {
		t.Fatal(err)
	}
	checkCI(t, fromLog)
	if fromLog.Since.IsZero() {
		t.Error("ReadLog found no start time")
	}
	set, err := policy.NewSet([]policy.Sandbox{{Name: "other", Sources: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")},
		Policy: mustPolicy(t, policy.Spec{Mode: policy.ModeAllowAll})}}, policy.Guard{})
	if err != nil {
		t.Fatal(err)
	}
	rec.SetSandboxes(set)
	if _, ok := rec.Activity("ci"); ok {
		t.Error("a removed sandbox's record survives: a new one of that name would inherit it")
	}
	if _, ok := rec.Activity("other"); !ok {
		t.Error("a kept sandbox's record was forgotten")
	}
}

func mustPolicy(t *testing.T, s policy.Spec) *policy.Policy {
	t.Helper()
	p, err := policy.Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The suggestion loads as a policy (comments stripped) that allows what
// passed and nothing that was refused or never answered.
func TestSuggest(t *testing.T) {
	rec := NewRecord()
	logSome(zap.New(rec.Core()))
	a, _ := rec.Activity("ci")
	for _, tc := range []struct {
		fold    int
		domains []string
	}{
		{0, []string{"a.files.example.com", "b.files.example.com", "ntp.example.org", "pypi.org"}},
		{3, []string{"*.files.example.com", "ntp.example.org", "pypi.org"}},
		{4, []string{"a.files.example.com", "b.files.example.com", "ntp.example.org", "pypi.org"}},
	} {
		s := Suggest(a, tc.fold, []string{"203.0.113.128/25"})
		var out bytes.Buffer
		if err := s.Write(&out); err != nil {
			t.Fatal(err)
		}
		var spec policy.Spec
		dec := json.NewDecoder(bytes.NewReader(StripComments(out.Bytes())))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&spec); err != nil {
			t.Fatalf("fold %d: the suggestion is not a policy object: %v\n%s", tc.fold, err, out.String())
		}
		if _, err := policy.Compile(spec); err != nil {
			t.Fatalf("fold %d: the suggestion does not compile: %v", tc.fold, err)
		}
		if strings.Join(spec.AllowDomains, " ") != strings.Join(tc.domains, " ") {
			t.Errorf("fold %d: allow_domains %q, want %q\n%s", tc.fold, spec.AllowDomains, tc.domains, out.String())
		}
		if strings.Join(spec.AllowCIDRs, " ") != "203.0.113.5/32 203.0.113.53/32/udp" { // UDP only: what the kernel saw
			t.Errorf("fold %d: allow_cidrs %q", tc.fold, spec.AllowCIDRs)
		}
		if len(spec.DenyCIDRs) != 1 || spec.Mode != policy.ModeCustom || spec.Audit {
			t.Errorf("fold %d: %+v: want mode custom, enforcing, deny_cidrs kept", tc.fold, spec)
		}
		for _, want := range []string{"# left out, denied: evil.example.net", "# left out, never answered: pypi.org.localdomain",
			"# left out, in deny_cidrs: inside-deny.example",
			"# 6 udp packets"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("fold %d: output lacks %q:\n%s", tc.fold, want, out.String())
			}
		}
	}
}

// Public suffixes are never folded: "*.co.uk" would open half a country.
func TestSuggestNeverFoldsPublicSuffix(t *testing.T) {
	a := Activity{Sandbox: "x", Entries: []Entry{{Kind: KindName, Value: "a.co.uk", Flows: 1}, {Kind: KindName, Value: "b.co.uk", Flows: 1}}}
	s := Suggest(a, 1, nil)
	if len(s.Domains) != 2 {
		t.Errorf("folded a public suffix: %+v", s.Domains)
	}
}
