package control

import (
	"strings"
	"testing"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/internal/hostnet"
)

const inspectConfig = `
[proxy]
upstream_dns = ["198.51.100.53:53"]

[host]
sandbox_interfaces = ["veth-sb*", "tap*"]

[[sandbox]]
name = "sb1"
interface = "veth-sbl"
sources = ["10.231.0.2/32"]
mode = "deny-all"
`

func TestInspect(t *testing.T) {
	cfg, err := config.Parse("egressd.toml", []byte(inspectConfig))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("typo: missing interface, and the real one unclaimed", func(t *testing.T) {
		warnings, err := Inspect(cfg.Sandboxes.All(), cfg.Host, []hostnet.Link{{Name: "lo"}, {Name: "veth-sb1"}, {Name: "eth0"}}, true)
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(warnings, "\n")
		for _, want := range []string{
			`sandbox "sb1": interface "veth-sbl" does not exist (yet)`,
			`interface "veth-sb1" matches host.sandbox_interfaces but no sandbox claims it`,
		} {
			if !strings.Contains(got, want) {
				t.Errorf("warnings %q lack %q", got, want)
			}
		}
		if strings.Contains(got, "eth0") {
			t.Errorf("warned about an unguarded interface: %q", got)
		}
	})
	t.Run("bridge port refused", func(t *testing.T) {
		links := []hostnet.Link{{Name: "veth-sbl", Master: "br-eg", MasterKind: "bridge"}, {Name: "br-eg"}}
		_, err := Inspect(cfg.Sandboxes.All(), cfg.Host, links, true)
		if err == nil || !strings.Contains(err.Error(), `interface "veth-sbl" is a port of bridge "br-eg"`) ||
			!strings.Contains(err.Error(), `use "br-eg" as interface`) {
			t.Fatalf("err = %v, want the bridge named and the fix", err)
		}
	})
	t.Run("all well", func(t *testing.T) {
		warnings, err := Inspect(cfg.Sandboxes.All(), cfg.Host, []hostnet.Link{{Name: "veth-sbl"}}, true)
		if err != nil || len(warnings) != 0 {
			t.Fatalf("warnings %q, err %v", warnings, err)
		}
	})
}
