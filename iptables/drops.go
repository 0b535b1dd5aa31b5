package iptables

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
)

// KernelDrop is one counter of kdrops4 or kdrops6: the packets from one
// source address that the mode chains denied for one reason.
type KernelDrop struct {
	Source  netip.Addr
	Reason  string // one of KernelReasons
	Packets uint64
}

// KernelDrops reads the per-source denial counters (a full load of the
// ruleset starts them again from zero; an element unseen for an hour
// expires).
func (in Installer) KernelDrops(ctx context.Context) ([]KernelDrop, error) {
	var out []KernelDrop
	err := in.readCounters(ctx, []string{"kdrops4", "kdrops6"}, func(key []json.RawMessage, packets uint64) error {
		d, ok, err := dropOf(key, packets)
		if ok {
			out = append(out, d)
		}
		return err
	})
	return out, err
}

// KernelAudited is one counter of kaudit4 or kaudit6: the packets from one
// source to one destination, over one protocol, that a sandbox in
// report-only mode sent and its policy would deny.
type KernelAudited struct {
	Source, Dest netip.Addr
	Proto        string // as nft names it: "udp", "icmp", "ipv6-icmp", or a number
	Packets      uint64
}

// KernelAudit reads what report-only sandboxes sent that their policy
// would deny (same lifetime as KernelDrops).
func (in Installer) KernelAudit(ctx context.Context) ([]KernelAudited, error) {
	var out []KernelAudited
	err := in.readCounters(ctx, []string{"kaudit4", "kaudit6"}, func(key []json.RawMessage, packets uint64) error {
		a, err := auditedOf(key, packets)
		if err == nil {
			out = append(out, a)
		}
		return err
	})
	return out, err
}

// readCounters lists each of sets and calls fn with every element's key
// and packet count.
func (in Installer) readCounters(ctx context.Context, sets []string, fn func([]json.RawMessage, uint64) error) error {
	for _, set := range sets {
		b, err := in.run(ctx, "", "nft", "-j", "list", "set", "inet", Table, set)
		if err != nil {
			return fmt.Errorf("iptables: read %s: %w", set, err)
		}
		if err := parseCounters(b, fn); err != nil {
			return fmt.Errorf("iptables: read %s: %w", set, err)
		}
	}
	return nil
}

// parseCounters reads `nft -j list set` output of a set whose elements
// are concatenations with counters.
func parseCounters(b []byte, fn func([]json.RawMessage, uint64) error) error {
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []struct {
					Elem struct {
						Val struct {
							Concat []json.RawMessage `json:"concat"`
						} `json:"val"`
						Counter struct {
							Packets uint64 `json:"packets"`
						} `json:"counter"`
					} `json:"elem"`
				} `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return err
	}
	for _, item := range doc.Nftables {
		if item.Set == nil {
			continue
		}
		for _, e := range item.Set.Elem {
			if err := fn(e.Elem.Val.Concat, e.Elem.Counter.Packets); err != nil {
				return err
			}
		}
	}
	return nil
}

// dropOf reads a kdrops element: source . reason id. An id that is not
// one of KernelReasons (a mark set by someone else) is skipped.
func dropOf(key []json.RawMessage, packets uint64) (KernelDrop, bool, error) {
	if len(key) != 2 {
		return KernelDrop{}, false, fmt.Errorf("element key %s: want source . reason", key)
	}
	a, err := addrOf(key[0])
	if err != nil {
		return KernelDrop{}, false, err
	}
	var id int
	if err := json.Unmarshal(key[1], &id); err != nil {
		return KernelDrop{}, false, err
	}
	if id < 1 || id > len(KernelReasons) {
		return KernelDrop{}, false, nil
	}
	return KernelDrop{Source: a, Reason: KernelReasons[id-1], Packets: packets}, true, nil
}

// auditedOf reads a kaudit element: source . destination . protocol.
func auditedOf(key []json.RawMessage, packets uint64) (KernelAudited, error) {
	if len(key) != 3 {
		return KernelAudited{}, fmt.Errorf("element key %s: want source . destination . protocol", key)
	}
	src, err := addrOf(key[0])
	if err != nil {
		return KernelAudited{}, err
	}
	dst, err := addrOf(key[1])
	if err != nil {
		return KernelAudited{}, err
	}
	var proto string
	if err := json.Unmarshal(key[2], &proto); err != nil {
		var n int
		if err := json.Unmarshal(key[2], &n); err != nil {
			return KernelAudited{}, fmt.Errorf("element protocol %s: %w", key[2], err)
		}
		proto = strconv.Itoa(n)
	}
	return KernelAudited{Source: src, Dest: dst, Proto: proto, Packets: packets}, nil
}

func addrOf(raw json.RawMessage) (netip.Addr, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return netip.Addr{}, err
	}
	return netip.ParseAddr(s)
}
