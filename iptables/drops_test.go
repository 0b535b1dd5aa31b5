package iptables

import (
	"encoding/json"
	"net/netip"
	"testing"
)

func TestParseDrops(t *testing.T) {
	in := `{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": {"family": "inet", "name": "kdrops4", "table": "egressd",
	"elem": [{"elem": {"val": {"concat": ["10.231.0.2", 3]}, "timeout": 3600, "expires": 3599, "counter": {"packets": 5, "bytes": 145}}},
	         {"elem": {"val": {"concat": ["10.231.0.3", 99]}, "counter": {"packets": 1, "bytes": 1}}}]}}]}`
	var got []KernelDrop
	err := parseCounters([]byte(in), func(key []json.RawMessage, n uint64) error {
		d, ok, err := dropOf(key, n)
		if ok {
			got = append(got, d)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := KernelDrop{Source: netip.MustParseAddr("10.231.0.2"), Reason: "deny_cidrs", Packets: 5}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("got %+v, want [%+v] (unknown ids skipped)", got, want)
	}
}

// The output of nft 1.0.6 for kaudit4: protocols by name, or by number
// when nft knows no name.
func TestParseAudited(t *testing.T) {
	in := `{"nftables": [{"set": {"family": "inet", "name": "kaudit4", "table": "egressd", "type": ["ipv4_addr", "ipv4_addr", "inet_proto"],
	"elem": [{"elem": {"val": {"concat": ["10.5.0.2", "198.51.100.200", "udp"]}, "expires": 3599, "counter": {"packets": 3, "bytes": 90}}},
	         {"elem": {"val": {"concat": ["10.5.0.2", "198.51.100.201", 253]}, "counter": {"packets": 1, "bytes": 1}}}]}}]}`
	var got []KernelAudited
	err := parseCounters([]byte(in), func(key []json.RawMessage, n uint64) error {
		a, err := auditedOf(key, n)
		got = append(got, a)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("10.5.0.2")
	want := []KernelAudited{{src, netip.MustParseAddr("198.51.100.200"), "udp", 3}, {src, netip.MustParseAddr("198.51.100.201"), "253", 1}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}
