// Package control owns egressd's live policy: the config file's sandboxes,
// the sandboxes and policy overrides created through the admin API, and
// pushing every change to the kernel rules, the proxy and the resolver.
//
//	SIGHUP ──► Reload(cfg) ────┐
//	API PUT ─► SetPolicy ──────┤
//	API DEL ─► ResetPolicy ────┼─► build policy.Set off to the side
//	API POST ► AddSandbox ─────┤      │ invalid: refused, old set stays
//	API DEL ─► RemoveSandbox ──┘      │
//	                               ▼
//	                host check: sandbox interfaces (reload and start only)
//	                               ▼
//	                persist overrides (API changes) and guarded interfaces
//	                               ▼
//	                kernel rules (one nft transaction)
//	                               ▼
//	                proxy, resolver: atomic swap; live flows re-judged
//
// Writers serialise on one mutex; readers (List, Policy, Sandboxes) load
// an immutable snapshot lock-free, so none waits on a kernel change.
// At every moment a packet is judged by the old or the new policy: the
// kernel transaction is atomic and each component swaps in one store.
package control

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/internal/hostnet"
	"github.com/egressd/egressd/policy"
)

// restoreTimeout bounds reinstalling the running rules after a failed change.
const restoreTimeout = 30 * time.Second

// Source says where a sandbox's policy comes from.
type Source string

// The sources.
const (
	SourceConfig Source = "config"
	SourceAPI    Source = "api"
)

// Kernel installs the kernel rules for set (one atomic transaction);
// guarded are the interfaces any sandbox ever named, which stay guarded
// after their sandbox is gone.
type Kernel func(ctx context.Context, cfg *config.Config, set *policy.Set, guarded []string) error

// Hooks are the controller's ways into the host. Kernel is required.
type Hooks struct {
	Kernel Kernel
	// Links lists the host's interfaces, to check the sandboxes' before a
	// config applies (see Inspect); nil skips the check.
	Links func() ([]hostnet.Link, error)
	// Link finds one interface, to check a sandbox created at runtime;
	// nil skips the check.
	Link func(name string) (hostnet.Link, bool, error)
	// IsLocal tells the host's own addresses (policy.Guard.IsLocal).
	IsLocal func(netip.Addr) bool
	// Bridge turns on bridge netfilter for a bridge that is a sandbox
	// interface (hostnet.EnsureBridgeNetfilter); nil skips that.
	Bridge func(name string) (changed bool, err error)
	// BridgePorts replaces the kernel's list of the ports of bridges
	// that are sandbox interfaces (iptables.Installer.SetBridgePorts);
	// nil skips it.
	BridgePorts func(ports []string) error
	// Refuse, when not nil, refuses sandboxes and a [host] section this
	// egressd cannot enforce, before anything of a change is persisted
	// (egressd without kernel rules: interfaces).
	Refuse func(sbs []*policy.Sandbox, host config.Host) error
	// LoopbackResolver names a loopback nameserver of the host's
	// resolv.conf (hostnet.LoopbackResolver), "" if none; nil skips the
	// warning it feeds.
	LoopbackResolver func() string
}

// Component is a part of the data path that judges flows with a set.
type Component interface {
	SetSandboxes(set *policy.Set)
}

// ErrUnknownSandbox is returned for a sandbox name the config does not have.
var ErrUnknownSandbox = errors.New("unknown sandbox")

// ErrApply marks a change that failed in the kernel or the state
// directory rather than in validation; the old policy stays everywhere.
var ErrApply = errors.New("not applied, the old policy stays")

// Controller holds the current policy set. Create it with New.
type Controller struct {
	mu        sync.Mutex // serialises writers
	cfg       *config.Config
	overrides map[string]policy.Spec
	added     apiSandboxes            // created through the API
	guarded   []string                // every interface a sandbox ever named, sorted
	compiled  map[string]compiledSpec // overrides compiled, by sandbox
	store     *Store
	hooks     Hooks
	comps     []Component
	log       *zap.Logger
	snap      atomic.Pointer[snapshot]

	warnedLoopbackDNS atomic.Bool

	// kinds is the last known link kind of each sandbox interface ("" for
	// one that did not exist): only bridges, and interfaces not seen yet,
	// need the link dump that costs ~26 ms at 1,000 links.
	kindsMu   sync.Mutex
	kinds     map[string]string
	lastPorts []string // what BridgePorts last set
}

// snapshot is what readers see: the set in force and, for each sandbox,
// where it and its policy come from. It is replaced, never changed.
type snapshot struct {
	set       *policy.Set
	overrides map[string]policy.Spec
	added     apiSandboxes
}

// New builds the starting set from cfg and the overrides and guarded
// interfaces persisted in store. It installs nothing: call Apply once the
// components are added.
func New(cfg *config.Config, store *Store, hooks Hooks, log *zap.Logger) (*Controller, error) {
	overrides, err := store.Load()
	if err != nil {
		return nil, err
	}
	guarded, err := store.LoadGuarded()
	if err != nil {
		return nil, err
	}
	added, err := store.LoadSandboxes(cfg.Host)
	if err != nil {
		return nil, err
	}
	c := &Controller{cfg: cfg, overrides: overrides, added: added, guarded: guarded, store: store, hooks: hooks, log: log.Named("control")}
	set, err := c.build(cfg, added, overrides)
	if err != nil {
		return nil, fmt.Errorf("control: persisted state: %w", err)
	}
	for name := range overrides {
		if _, ok := set.ByName(name); !ok {
			c.log.Warn("persisted policy for a sandbox not in the config: ignored", zap.String("sandbox", name))
		}
	}
	c.publish(set, overrides, added)
	return c, nil
}

// publish makes a new snapshot the readers' view.
func (c *Controller) publish(set *policy.Set, overrides map[string]policy.Spec, added apiSandboxes) {
	c.snap.Store(&snapshot{set: set, overrides: overrides, added: added})
}

// AddComponent registers a component; it receives every new set.
func (c *Controller) AddComponent(comp Component) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.comps = append(c.comps, comp)
}

// Sandboxes returns the current set.
func (c *Controller) Sandboxes() *policy.Set { return c.snap.Load().set }

// Config returns the config file the current set was built from.
func (c *Controller) Config() *config.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg
}

// Apply checks the host, installs the current set in the kernel and hands
// it to every component. run calls it once at start.
func (c *Controller) Apply(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	guarded, err := c.prepare(c.Sandboxes().All(), c.cfg.Host, true)
	if err != nil {
		return err
	}
	return c.apply(ctx, c.cfg, c.Sandboxes(), c.added, c.overrides, guarded)
}

// Preview hands the kernel hook what Apply would install, guarded
// interfaces included, without persisting anything or touching the
// components (egressd rules).
func (c *Controller) Preview() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	guarded := c.guarding(c.Sandboxes().All())
	return c.hooks.Kernel(context.Background(), c.cfg, c.Sandboxes(), guarded)
}

// prepare checks sandboxes' interfaces on this host (warnings logged, a
// bridge port refused) and returns the guarded interfaces with theirs
// added, for the caller to persist before they may apply. Guarding an
// interface that then does not apply is harmless.
func (c *Controller) prepare(sbs []*policy.Sandbox, host config.Host, all bool) ([]string, error) {
	if c.hooks.Refuse != nil {
		if err := c.hooks.Refuse(sbs, host); err != nil {
			return nil, err
		}
	}
	if links, ok, err := c.links(sbs, all); err != nil {
		return nil, fmt.Errorf("control: %w", err)
	} else if ok {
		warnings, err := Inspect(sbs, host, links, all)
		for _, w := range warnings {
			c.log.Warn(w)
		}
		if err != nil {
			return nil, err
		}
		if err := c.bridges(sbs, links); err != nil {
			return nil, err
		}
	}
	return c.guarding(sbs), nil
}

// bridges turns on bridge netfilter for every sandbox interface in links
// that is a bridge. Without it, frames the bridge forwards from one port
// to another (sandbox to sandbox, sandbox to a neighbour) would reach none
// of egressd's rules when the host-wide sysctl is off.
func (c *Controller) bridges(sbs []*policy.Sandbox, links []hostnet.Link) error {
	isBridge := map[string]bool{}
	for _, l := range links {
		isBridge[l.Name] = l.Kind == "bridge"
	}
	c.noteKinds(sbs, links)
	if c.hooks.Bridge == nil {
		return nil
	}
	done := map[string]bool{}
	for _, sb := range sbs {
		name := sb.Interface
		if !isBridge[name] || done[name] {
			continue
		}
		done[name] = true
		changed, err := c.hooks.Bridge(name)
		if err != nil {
			return fmt.Errorf("control: sandbox %q: interface %q is a bridge: %w", sb.Name, name, err)
		}
		if changed {
			c.log.Info("bridge netfilter turned on for this bridge only (nf_call_iptables, nf_call_ip6tables), "+
				"so that egressd judges frames between its ports; host-wide net.bridge sysctls untouched",
				zap.String("bridge", name), zap.String("sandbox", sb.Name))
		}
		c.warnLoopbackDNS(name)
	}
	return nil
}

// warnLoopbackDNS warns, once, that Docker would send the DNS of
// containers on a bridge past egressd when the host's resolver is a
// loopback address (docs/deploy.md).
func (c *Controller) warnLoopbackDNS(bridge string) {
	if c.hooks.LoopbackResolver == nil || c.warnedLoopbackDNS.Swap(true) {
		return
	}
	if ns := c.hooks.LoopbackResolver(); ns != "" {
		c.log.Warn("the host's resolver is a loopback address: if this bridge is a Docker network, Docker's embedded DNS "+
			"forwards its containers' queries from the host's namespace, past egressd; set a non-loopback \"dns\" "+
			"in /etc/docker/daemon.json (or --dns per container) so they leave from the container",
			zap.String("bridge", bridge), zap.String("nameserver", ns))
	}
}

// CheckBridges repeats bridges for every sandbox: a bridge created, or
// re-created, after its sandbox applied gets bridge netfilter too, and the
// kernel learns the ports that joined a sandbox bridge. The daemon calls
// it once a second and after every change.
func (c *Controller) CheckBridges() {
	if c.hooks.Links == nil {
		return
	}
	sbs := c.Sandboxes().All()
	if bridge, unsure := c.watched(sbs); !bridge && !unsure {
		return // veths and taps only: nothing a second can change
	}
	links, err := c.hooks.Links()
	if err == nil {
		err = c.bridges(sbs, links)
	}
	if err != nil {
		c.log.Error("bridge check failed", zap.Error(err))
	}
	c.syncBridgePorts(sbs)
}

// noteKinds records the kinds of sbs's interfaces as links shows them.
func (c *Controller) noteKinds(sbs []*policy.Sandbox, links []hostnet.Link) {
	kind := map[string]string{}
	for _, l := range links {
		kind[l.Name] = l.Kind
	}
	c.kindsMu.Lock()
	defer c.kindsMu.Unlock()
	if c.kinds == nil {
		c.kinds = map[string]string{}
	}
	for _, sb := range sbs {
		if sb.Interface == "" {
			continue // an explicit proxy's only: no interface
		}
		if k, ok := kind[sb.Interface]; ok {
			c.kinds[sb.Interface] = k
		} else if _, known := c.kinds[sb.Interface]; !known {
			c.kinds[sb.Interface] = ""
		}
	}
}

// watched reports whether sbs has an interface that is a bridge, and one
// whose kind is unknown or that did not exist at the last look.
func (c *Controller) watched(sbs []*policy.Sandbox) (bridge, unsure bool) {
	c.kindsMu.Lock()
	defer c.kindsMu.Unlock()
	for _, sb := range sbs {
		if sb.Interface == "" {
			continue // an explicit proxy's only: no interface
		}
		switch k, ok := c.kinds[sb.Interface]; {
		case !ok || k == "":
			unsure = true
		case k == "bridge":
			bridge = true
		}
	}
	return bridge, unsure
}

// bridgePorts are the ports of the bridges that sbs name as interface.
func bridgePorts(sbs []*policy.Sandbox, links []hostnet.Link) []string {
	bridges := map[string]bool{}
	for _, sb := range sbs {
		if sb.Interface == "" {
			continue // an explicit proxy's only: no interface
		}
		bridges[sb.Interface] = true
	}
	var ports []string
	for _, l := range links {
		if l.MasterKind == "bridge" && bridges[l.Master] {
			ports = append(ports, l.Name)
		}
	}
	slices.Sort(ports)
	return ports
}

// links are the host's interfaces (all), or those of sbs; false when the
// hooks cannot tell.
func (c *Controller) links(sbs []*policy.Sandbox, all bool) ([]hostnet.Link, bool, error) {
	if all {
		if c.hooks.Links == nil {
			return nil, false, nil
		}
		links, err := c.hooks.Links()
		return links, true, err
	}
	if c.hooks.Link == nil {
		return nil, false, nil
	}
	var links []hostnet.Link
	for _, sb := range sbs {
		if sb.Interface == "" {
			continue // an explicit proxy's only: no interface
		}
		l, ok, err := c.hooks.Link(sb.Interface)
		if err != nil {
			return nil, false, err
		}
		if ok {
			links = append(links, l)
		}
	}
	return links, true, nil
}

// guarding returns the guarded interfaces with sbs's added.
func (c *Controller) guarding(sbs []*policy.Sandbox) []string {
	next := slices.Clone(c.guarded)
	seen := make(map[string]bool, len(next)+len(sbs))
	for _, name := range next {
		seen[name] = true
	}
	for _, sb := range sbs {
		if sb.Interface == "" || seen[sb.Interface] {
			continue // an explicit proxy's only: no interface; or guarded already
		}
		seen[sb.Interface] = true
		next = append(next, sb.Interface)
	}
	slices.Sort(next)
	return next
}

// Reload switches to a new config file's sandboxes and [host] section. The overrides stay in
// force. Keys outside [[sandbox]] (ports, upstreams, timeouts, [dns],
// [admin], [state]) keep their running values until a restart: the kernel
// rules must keep pointing at the ports egressd listens on. A change to
// them is logged.
func (c *Controller) Reload(ctx context.Context, cfg *config.Config) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := *c.cfg
	next.Path, next.Sandboxes, next.Host = cfg.Path, cfg.Sandboxes, cfg.Host
	set, err := c.build(&next, c.added, c.overrides)
	if err != nil {
		return err
	}
	guarded, err := c.prepare(set.All(), next.Host, true)
	if err != nil {
		return err
	}
	if err := c.apply(ctx, &next, set, c.added, c.overrides, guarded); err != nil {
		return err
	}
	c.warnRestartOnly(cfg)
	c.warnOverrides(&next)
	c.cfg = &next
	c.publish(set, c.overrides, c.added)
	return nil
}

// warnOverrides logs, for each persisted override, whether it applies to
// a sandbox that next adds back or to none at all; either way the API
// policy, not the file's, is what holds until DELETE.
func (c *Controller) warnOverrides(next *config.Config) {
	for name := range c.overrides {
		old, was := c.cfg.Sandboxes.ByName(name)
		sb, is := next.Sandboxes.ByName(name)
		switch {
		case is && was && !reflect.DeepEqual(old.Policy.Spec(), sb.Policy.Spec()):
			c.log.Warn("reload: the file changed this sandbox's policy, but its API policy stays in force "+
				"until DELETE /v1/sandboxes/{name}/policy (egressd policy reset): nothing changed for it",
				zap.String("sandbox", name))
		case is && !was:
			c.log.Warn("reload: sandbox added back; its persisted API policy applies until DELETE", zap.String("sandbox", name))
		case !is && was:
			c.log.Warn("reload: sandbox removed; its persisted API policy is kept until DELETE", zap.String("sandbox", name))
		}
	}
}

// SetPolicy replaces the named sandbox's policy until ResetPolicy. The
// change is persisted before SetPolicy returns, so a restart keeps it.
func (c *Controller) SetPolicy(ctx context.Context, name string, spec policy.Spec) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.Sandboxes().ByName(name); !ok {
		return fmt.Errorf("sandbox %q: %w", name, ErrUnknownSandbox)
	}
	if err := CheckSpec(spec); err != nil {
		return fmt.Errorf("sandbox %q: %w", name, err)
	}
	next := cloneOverrides(c.overrides)
	next[name] = spec
	return c.switchOverrides(ctx, next)
}

// ResetPolicy drops the named sandbox's override: the config file's
// policy applies again.
// An override persisted for a sandbox the config no longer has can be
// dropped too, so that it does not come back into force if the sandbox is
// added again.
func (c *Controller) ResetPolicy(ctx context.Context, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, exists := c.Sandboxes().ByName(name)
	if _, overridden := c.overrides[name]; !exists && !overridden {
		return fmt.Errorf("sandbox %q: %w", name, ErrUnknownSandbox)
	}
	next := cloneOverrides(c.overrides)
	delete(next, name)
	return c.switchOverrides(ctx, next)
}

// switchOverrides validates next, then persists and applies it.
func (c *Controller) switchOverrides(ctx context.Context, next map[string]policy.Spec) error {
	set, err := c.build(c.cfg, c.added, next)
	if err != nil {
		return err
	}
	if err := c.apply(ctx, c.cfg, set, c.added, next, c.guarded); err != nil {
		return err
	}
	c.overrides = next
	c.publish(set, next, c.added)
	return nil
}

// apply persists added, overrides and guarded (one Store.Save) while the
// kernel installs set with cfg — the wait for the disk and the kernel's
// transaction overlap — then hands set to every component; the caller
// publishes it to readers. It returns once both are done. If either
// failed, the components never saw set, the running set is installed in
// the kernel again (a timeout may have ended a transaction that
// committed) and the state files are written back; guarded interfaces
// that were saved stay guarded (guarding more is harmless). A crash in
// between leaves each state file old or new, and a restart applies what
// they hold: a change is in force, or not, as a whole.
func (c *Controller) apply(ctx context.Context, cfg *config.Config, set *policy.Set, added apiSandboxes,
	overrides map[string]policy.Spec, guarded []string) error {
	saved := make(chan error, 1)
	go func() { saved <- c.store.Save(added, overrides, guarded) }()
	kerr := c.hooks.Kernel(ctx, cfg, set, guarded)
	serr := <-saved
	if serr == nil {
		c.guarded = guarded
	}
	var err error
	if kerr != nil {
		err = fmt.Errorf("control: kernel rules: %w: %w", ErrApply, kerr)
	}
	if serr != nil { // both are reported when both failed
		err = errors.Join(err, fmt.Errorf("%w: %w", ErrApply, serr))
	}
	if err != nil {
		c.reinstall(set)
		return c.restoreState(err)
	}
	for _, comp := range c.comps {
		comp.SetSandboxes(set)
	}
	c.syncBridgePorts(set.All())
	return nil
}

// reinstall puts the running set back in the kernel after a change to set
// failed.
func (c *Controller) reinstall(set *policy.Set) {
	old := c.Sandboxes()
	if old == set {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), restoreTimeout)
	defer cancel()
	if err := c.hooks.Kernel(ctx, c.cfg, old, c.guarded); err != nil {
		c.log.Error("reinstalling the running policy's kernel rules failed", zap.Error(err))
	}
}

// syncBridgePorts tells the kernel the ports of sbs's bridges; a full load
// of the rules has just emptied that list.
func (c *Controller) syncBridgePorts(sbs []*policy.Sandbox) {
	if c.hooks.BridgePorts == nil || c.hooks.Links == nil {
		return
	}
	var ports []string
	if bridge, _ := c.watched(sbs); bridge {
		links, err := c.hooks.Links()
		if err != nil {
			c.log.Error("bridge ports not updated", zap.Error(err))
			return
		}
		ports = bridgePorts(sbs, links)
	} else if len(c.portsSet()) == 0 {
		return // no bridge now nor before: spare the link dump and the write
	}
	if err := c.hooks.BridgePorts(ports); err != nil {
		c.log.Error("bridge ports not updated", zap.Error(err))
		return
	}
	c.kindsMu.Lock()
	c.lastPorts = ports
	c.kindsMu.Unlock()
}

func (c *Controller) portsSet() []string {
	c.kindsMu.Lock()
	defer c.kindsMu.Unlock()
	return c.lastPorts
}

// build compiles cfg's sandboxes and the API's, with overrides applied.
// A config sandbox and an API one may not share a name (nor sources:
// policy.NewSet); they may share an interface.
func (c *Controller) build(cfg *config.Config, added apiSandboxes, overrides map[string]policy.Spec) (*policy.Set, error) {
	all := cfg.Sandboxes.All() // a copy of its own
	for _, a := range added.list {
		if _, dup := cfg.Sandboxes.ByName(a.Name); dup {
			return nil, fmt.Errorf("sandbox %q created through the API is also in %s: %w", a.Name, cfg.Path, ErrConflict)
		}
		all = append(all, a)
	}
	sbs := make([]policy.Sandbox, 0, len(all))
	for _, sb := range all {
		next := *sb
		if spec, ok := overrides[sb.Name]; ok {
			p, err := c.compile(sb.Name, spec)
			if err != nil {
				return nil, fmt.Errorf("sandbox %q: %w", sb.Name, err)
			}
			next.Policy = p
		}
		sbs = append(sbs, next)
	}
	if len(c.compiled) > 2*len(overrides)+16 { // forget removed sandboxes'
		for name := range c.compiled {
			if _, ok := overrides[name]; !ok {
				delete(c.compiled, name)
			}
		}
	}
	g := cfg.Host.Guard()
	g.IsLocal = c.hooks.IsLocal
	set, err := policy.NewSet(sbs, g)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, ErrConflict)
	}
	return set, nil
}

// compile compiles an override, reusing the policy compiled for the
// same spec last time: an unchanged sandbox keeps its *policy.Policy, so
// the components see that nothing changed for it.
func (c *Controller) compile(name string, spec policy.Spec) (*policy.Policy, error) {
	if cp, ok := c.compiled[name]; ok && reflect.DeepEqual(cp.spec, spec) {
		return cp.pol, nil
	}
	p, err := policy.Compile(spec)
	if err != nil {
		return nil, err
	}
	if c.compiled == nil {
		c.compiled = map[string]compiledSpec{}
	}
	c.compiled[name] = compiledSpec{spec: spec, pol: p}
	return p, nil
}

type compiledSpec struct {
	spec policy.Spec
	pol  *policy.Policy
}

func (c *Controller) warnRestartOnly(cfg *config.Config) {
	old := c.cfg
	if !reflect.DeepEqual(old.Proxy, cfg.Proxy) || old.DNS != cfg.DNS || old.Admin != cfg.Admin || old.State != cfg.State {
		c.log.Warn("reload: sandboxes and [host] applied; changes to [proxy], [dns], [admin] and [state] need a restart")
	}
}

func cloneOverrides(m map[string]policy.Spec) map[string]policy.Spec {
	out := make(map[string]policy.Spec, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}
