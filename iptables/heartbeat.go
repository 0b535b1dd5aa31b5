package iptables

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// The heartbeat: a running egressd keeps the elements of set AliveSet from
// expiring, and every rule that accepts non-TCP traffic sits behind a
// lookup in it. When egressd dies, by kill -9 too, nothing has to be done:
// the elements expire AliveTimeout after the last refresh and from then on
// no packet of a sandbox passes. TCP and DNS need no heartbeat: they go to
// egressd's sockets, and with egressd gone nothing listens.
const (
	// AliveSet is the heartbeat set in table inet egressd.
	AliveSet = "alive"
	// AliveTimeout is how long the set's elements live unrefreshed: the
	// longest a dead egressd lets non-TCP traffic pass.
	AliveTimeout = time.Second
	// aliveInterval is how often a running egressd refreshes them; four
	// refreshes fit in one timeout, so one late refresh loses nothing.
	aliveInterval = AliveTimeout / 4
)

// aliveKeys are the set's elements: meta nfproto of IPv4 and IPv6.
var aliveKeys = [][]byte{{unix.NFPROTO_IPV4}, {unix.NFPROTO_IPV6}}

// Heartbeat refreshes the heartbeat set every aliveInterval until ctx is
// done, in the network namespace in.NetNS (or this process's). Call it
// once the first Apply succeeded. onErr hears each failed refresh and,
// with nil, the first success after a failure.
func (in Installer) Heartbeat(ctx context.Context, onErr func(error)) error {
	conn, err := in.nftConn()
	if err != nil {
		return err
	}
	defer conn.CloseLasting()
	tick := time.NewTicker(aliveInterval)
	defer tick.Stop()
	failing := false
	for {
		err := refreshAlive(conn)
		switch {
		case err != nil:
			failing = true
			onErr(err)
		case failing:
			failing = false
			onErr(nil)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// refreshAlive replaces the set's elements with fresh ones in one
// transaction: flushing first works whether or not they had expired.
func refreshAlive(conn *nftables.Conn) error {
	set := &nftables.Set{
		Table:      &nftables.Table{Name: Table, Family: nftables.TableFamilyINet},
		Name:       AliveSet,
		HasTimeout: true,
	}
	elems := make([]nftables.SetElement, len(aliveKeys))
	for i, k := range aliveKeys {
		elems[i] = nftables.SetElement{Key: k, Timeout: AliveTimeout}
	}
	conn.FlushSet(set)
	if err := conn.SetAddElements(set, elems); err != nil {
		return fmt.Errorf("iptables: heartbeat: %w", err)
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("iptables: heartbeat: %w", err)
	}
	return nil
}

// nftConn opens a lasting netlink connection, in in.NetNS if set.
func (in Installer) nftConn() (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if in.NetNS != "" {
		f, err := os.Open(filepath.Join("/run/netns", in.NetNS))
		if err != nil {
			return nil, fmt.Errorf("iptables: heartbeat: %w", err)
		}
		defer f.Close()
		opts = append(opts, nftables.WithNetNSFd(int(f.Fd())))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("iptables: heartbeat: %w", err)
	}
	return conn, nil
}

// BridgePortsSet is the set, in table bridge egressd, of the ports of
// bridges that sandboxes name as interface (see writeBridgeChain).
const BridgePortsSet = "sbports"

// SetBridgePorts replaces the elements of BridgePortsSet with ports, in
// one transaction. A full load of the ruleset empties the set: call it
// again after every Apply.
func (in Installer) SetBridgePorts(ports []string) error {
	conn, err := in.nftConn()
	if err != nil {
		return err
	}
	defer conn.CloseLasting()
	set := &nftables.Set{
		Table:   &nftables.Table{Name: Table, Family: nftables.TableFamilyBridge},
		Name:    BridgePortsSet,
		KeyType: nftables.TypeIFName,
	}
	elems := make([]nftables.SetElement, len(ports))
	for i, p := range ports {
		key, _ := ifaceField(p).bytes()
		elems[i] = nftables.SetElement{Key: key}
	}
	conn.FlushSet(set)
	if len(elems) > 0 {
		if err := conn.SetAddElements(set, elems); err != nil {
			return fmt.Errorf("iptables: bridge ports: %w", err)
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("iptables: bridge ports: %w", err)
	}
	return nil
}
