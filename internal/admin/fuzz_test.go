package admin

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/egressd/egressd/internal/control"
)

// FuzzDecodeSpec checks that any body either decodes into a policy that
// survives a JSON round trip, or is refused with a message; never a panic.
func FuzzDecodeSpec(f *testing.F) {
	f.Add([]byte(`{"mode":"custom","allow_domains":["a.test","*.b.test"],"allow_cidrs":["198.51.100.0/24"],"deny_cidrs":["2001:db8::/32"]}`))
	f.Add([]byte(`{"mode":"allow-all","deny_cidrs":null}`))
	f.Add([]byte(`{"mode":"custom","allow_domains":[1]}`))
	f.Add([]byte(`{"mode":"custom"}{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		spec, err := decodeSpec(bytes.NewReader(body))
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		_ = control.CheckSpec(spec)
		again, err := decodeSpec(bytes.NewReader([]byte(mustJSON(t, spec))))
		if err != nil {
			t.Fatalf("re-decode of %+v: %v", spec, err)
		}
		if !reflect.DeepEqual(normalizeNil(spec.AllowDomains), normalizeNil(again.AllowDomains)) || spec.Mode != again.Mode {
			t.Fatalf("round trip %+v -> %+v", spec, again)
		}
		var v any
		if json.Unmarshal(body, &v) != nil {
			t.Fatalf("decoded invalid JSON %q", body)
		}
	})
}

func normalizeNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}
