package config

// The file schema: what the TOML decoder fills in (decode.go). Everything
// here is the user's raw text; validate.go turns it into the domain model.
// The toml tags are the public contract of the config file; a `want` tag
// says what a wrong-typed value should have been.

type fileConfig struct {
	Proxy   fileProxy     `toml:"proxy"`
	Admin   fileAdmin     `toml:"admin"`
	State   fileState     `toml:"state"`
	DNS     fileDNS       `toml:"dns"`
	Host    fileHost      `toml:"host"`
	Sandbox []fileSandbox `toml:"sandbox"`
}

type fileProxy struct {
	TProxyPort         int      `toml:"tproxy_port"`
	DNSPort            int      `toml:"dns_port"`
	UpstreamDNS        []string `toml:"upstream_dns"`
	PeekTimeout        string   `toml:"peek_timeout" want:"a duration string such as \"5s\""`
	MaxConnsPerSandbox int      `toml:"max_conns_per_sandbox"`
	DialTimeout        string   `toml:"dial_timeout" want:"a duration string such as \"5s\""`
	ShutdownTimeout    string   `toml:"shutdown_timeout" want:"a duration string such as \"5s\""`
	IdleTimeout        string   `toml:"idle_timeout" want:"a duration string such as \"1h\", or \"0\" for none"`
	MaxPeekBytesPerSb  int64    `toml:"max_peek_bytes_per_sandbox"`
	MaxPeekBytes       int64    `toml:"max_peek_bytes"`
}

type fileDNS struct {
	MinBindingTTL         string `toml:"min_binding_ttl" want:"a duration string such as \"1h\""`
	BlockPrivateAnswers   bool   `toml:"block_private_answers" want:"true or false"`
	CacheSize             int    `toml:"cache_size"`
	MaxBindingsPerSandbox int    `toml:"max_bindings_per_sandbox"`
}

type fileHost struct {
	SandboxInterfaces []string `toml:"sandbox_interfaces"`
	ProtectHost       bool     `toml:"protect_host" want:"true or false"`
	IsolateSandboxes  bool     `toml:"isolate_sandboxes" want:"true or false"`
	Reject            string   `toml:"reject" want:"\"icmp\" or \"drop\""`
}

type fileAdmin struct {
	Socket  string `toml:"socket"`
	Metrics string `toml:"metrics"`
}

type fileState struct {
	Dir string `toml:"dir"`
}

type fileSandbox struct {
	Name         string   `toml:"name"`
	Interface    string   `toml:"interface"`
	Sources      []string `toml:"sources"`
	Mode         string   `toml:"mode"`
	AllowDomains []string `toml:"allow_domains"`
	AllowCIDRs   []string `toml:"allow_cidrs"`
	DenyCIDRs    []string `toml:"deny_cidrs"`
	Audit        bool     `toml:"audit" want:"true or false"`
	Listen       []string `toml:"listen"`
	ListenAuth   string   `toml:"listen_auth"`
	ListenMode   string   `toml:"listen_mode"`
	ListenOwner  string   `toml:"listen_owner"`
}

// Defaults for every key outside [[sandbox]]. proxy.upstream_dns has none
// on purpose: a made-up resolver would fail every lookup, quietly.
const (
	DefaultTProxyPort         = 15001
	DefaultDNSPort            = 15053
	DefaultPeekTimeout        = "5s"
	DefaultMaxConnsPerSandbox = 4096
	DefaultDialTimeout        = "5s"
	DefaultShutdownTimeout    = "10s"
	DefaultIdleTimeout        = "1h"
	DefaultMaxPeekBytesPerSb  = 16 << 20
	DefaultMaxPeekBytes       = 256 << 20
	// minPeekBytes holds one connection's largest peek: a 64 KiB
	// ClientHello, charged three times (proxy/peek.go).
	minPeekBytes       = 256 << 10
	DefaultAdminSocket = "/run/egressd/admin.sock"
	DefaultMetrics     = "" // off
	DefaultStateDir    = "/var/lib/egressd"

	DefaultMinBindingTTL         = "1h"
	DefaultBlockPrivateAnswers   = true
	DefaultCacheSize             = 10000
	DefaultMaxBindingsPerSandbox = 65536

	DefaultProtectHost      = true
	DefaultIsolateSandboxes = true
	DefaultReject           = RejectICMP
)

// defaultFile is the schema pre-filled with the defaults; decoding only
// overwrites the keys the file sets.
func defaultFile() fileConfig {
	return fileConfig{
		Proxy: fileProxy{
			TProxyPort:         DefaultTProxyPort,
			DNSPort:            DefaultDNSPort,
			PeekTimeout:        DefaultPeekTimeout,
			MaxConnsPerSandbox: DefaultMaxConnsPerSandbox,
			DialTimeout:        DefaultDialTimeout,
			ShutdownTimeout:    DefaultShutdownTimeout,
			IdleTimeout:        DefaultIdleTimeout,
			MaxPeekBytesPerSb:  DefaultMaxPeekBytesPerSb,
			MaxPeekBytes:       DefaultMaxPeekBytes,
		},
		Admin: fileAdmin{Socket: DefaultAdminSocket, Metrics: DefaultMetrics},
		State: fileState{Dir: DefaultStateDir},
		DNS: fileDNS{
			MinBindingTTL:         DefaultMinBindingTTL,
			BlockPrivateAnswers:   DefaultBlockPrivateAnswers,
			CacheSize:             DefaultCacheSize,
			MaxBindingsPerSandbox: DefaultMaxBindingsPerSandbox,
		},
		Host: fileHost{ProtectHost: DefaultProtectHost, IsolateSandboxes: DefaultIsolateSandboxes, Reject: DefaultReject},
	}
}
