package policy

import (
	"reflect"
	"testing"
)

func TestListErrors(t *testing.T) {
	all := Spec{AllowDomains: []string{"a.test"}, AllowCIDRs: []string{"198.51.100.0/24"}, DenyCIDRs: []string{"203.0.113.0/24"}}
	with := func(m Mode) Spec { s := all; s.Mode = m; return s }
	tests := []struct {
		name string
		spec Spec
		want []string
	}{
		{"custom takes every list", with(ModeCustom), nil},
		{"deny-all takes none", with(ModeDenyAll), []string{
			"allow_domains is not allowed in mode deny-all",
			"allow_cidrs is not allowed in mode deny-all",
			"deny_cidrs is not allowed in mode deny-all",
		}},
		{"allow-all takes deny_cidrs only", with(ModeAllowAll), []string{
			"allow_domains is not allowed in mode allow-all",
			"allow_cidrs is not allowed in mode allow-all",
		}},
		{"allow-all with deny_cidrs", Spec{Mode: ModeAllowAll, DenyCIDRs: []string{"203.0.113.0/24"}}, nil},
		{"empty lists are not set", Spec{Mode: ModeDenyAll, AllowDomains: []string{}}, nil},
		{"bad mode left to Compile", with("permissive"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, le := range tc.spec.ListErrors() {
				got = append(got, le.Error())
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ListErrors = %q, want %q", got, tc.want)
			}
			err := tc.spec.CheckLists()
			if (err != nil) != (len(tc.want) > 0) {
				t.Errorf("CheckLists = %v, want an error: %v", err, len(tc.want) > 0)
			}
		})
	}
}
