package iptables

import (
	"net/netip"
	"testing"
)

func TestParseDrops(t *testing.T) {
	in := `{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": {"family": "inet", "name": "kdrops4", "table": "egressd",
	"elem": [{"elem": {"val": {"concat": ["10.231.0.2", 3]}, "timeout": 3600, "expires": 3599, "counter": {"packets": 5, "bytes": 145}}},
	         {"elem": {"val": {"concat": ["10.231.0.3", 99]}, "counter": {"packets": 1, "bytes": 1}}}]}}]}`
	got, err := parseDrops([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := KernelDrop{Source: netip.MustParseAddr("10.231.0.2"), Reason: "deny_cidrs", Packets: 5}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("got %+v, want [%+v] (unknown ids skipped)", got, want)
	}
}
