package iptables

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
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
	for _, set := range []string{"kdrops4", "kdrops6"} {
		b, err := in.run(ctx, "", "nft", "-j", "list", "set", "inet", Table, set)
		if err != nil {
			return nil, fmt.Errorf("iptables: read %s: %w", set, err)
		}
		drops, err := parseDrops(b)
		if err != nil {
			return nil, fmt.Errorf("iptables: read %s: %w", set, err)
		}
		out = append(out, drops...)
	}
	return out, nil
}

// parseDrops reads `nft -j list set` output of kdrops4 or kdrops6.
func parseDrops(b []byte) ([]KernelDrop, error) {
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
		return nil, err
	}
	var out []KernelDrop
	for _, item := range doc.Nftables {
		if item.Set == nil {
			continue
		}
		for _, e := range item.Set.Elem {
			c := e.Elem.Val.Concat
			if len(c) != 2 {
				return nil, fmt.Errorf("element key %s: want source . reason", e.Elem.Val.Concat)
			}
			var src string
			var id int
			if err := json.Unmarshal(c[0], &src); err != nil {
				return nil, err
			}
			if err := json.Unmarshal(c[1], &id); err != nil {
				return nil, err
			}
			a, err := netip.ParseAddr(src)
			if err != nil {
				return nil, err
			}
			if id < 1 || id > len(KernelReasons) {
				continue // a mark set by someone else
			}
			out = append(out, KernelDrop{Source: a, Reason: KernelReasons[id-1], Packets: e.Elem.Counter.Packets})
		}
	}
	return out, nil
}
