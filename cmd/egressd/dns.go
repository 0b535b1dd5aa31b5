package main

import (
	"context"

	"go.uber.org/zap"

	"github.com/egressd/egressd/dnsfilter"
	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/policy"
)

// newResolver builds the filtering resolver from the [dns] section. It
// shares up, the upstream client, with the proxy.
func newResolver(cfg *config.Config, up *dnsfilter.Upstream, set *policy.Set, log *zap.Logger) *dnsfilter.Resolver {
	return dnsfilter.NewResolver(dnsfilter.Options{
		Port:                  cfg.Proxy.DNSPort,
		Upstream:              up,
		MinBindingTTL:         cfg.DNS.MinBindingTTL,
		BlockPrivateAnswers:   cfg.DNS.BlockPrivateAnswers,
		CacheSize:             cfg.DNS.CacheSize,
		MaxBindingsPerSandbox: cfg.DNS.MaxBindingsPerSandbox,
		Logger:                log,
	}, set)
}

// serveDNS runs the resolver until ctx is done.
func serveDNS(ctx context.Context, res *dnsfilter.Resolver, log *zap.Logger) {
	if err := res.Serve(ctx); err != nil {
		log.Error("dns resolver stopped", zap.Error(err))
	}
}
