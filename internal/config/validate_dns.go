package config

import "time"

// Bounds of the [dns] keys.
const (
	maxBindingTTL         = 24 * time.Hour
	maxCacheSize          = 10_000_000
	minBindingsPerSandbox = 256 // a single name may carry hundreds of addresses
	maxBindingsPerSandbox = 10_000_000
)

func (v *validator) dns(f fileDNS) DNS {
	d := DNS{
		MinBindingTTL:         v.duration("dns.min_binding_ttl", f.MinBindingTTL),
		BlockPrivateAnswers:   f.BlockPrivateAnswers,
		CacheSize:             f.CacheSize,
		MaxBindingsPerSandbox: f.MaxBindingsPerSandbox,
	}
	if d.MinBindingTTL > maxBindingTTL {
		v.bad("dns.min_binding_ttl", stringValue("dns.min_binding_ttl", f.MinBindingTTL, "must be at most 24h"))
	}
	if f.CacheSize < 0 || f.CacheSize > maxCacheSize {
		v.bad("dns.cache_size", intValue("dns.cache_size", f.CacheSize, "must be in 0..10000000 (0: no cache)"))
	}
	if f.MaxBindingsPerSandbox < minBindingsPerSandbox || f.MaxBindingsPerSandbox > maxBindingsPerSandbox {
		v.bad("dns.max_bindings_per_sandbox", intValue("dns.max_bindings_per_sandbox", f.MaxBindingsPerSandbox,
			"must be in 256..10000000: one name may carry hundreds of addresses"))
	}
	return d
}
