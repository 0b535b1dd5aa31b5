package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// handshakeTimeout bounds connect + TLS handshake of one connection.
const handshakeTimeout = 5 * time.Second

// client holds what every client subcommand shares: where to connect, as
// which name, and the label of the setup under test.
type client struct {
	setup  string
	target string
	tls    *tls.Config
}

// clientFlags registers the shared flags on fs; call init after Parse.
type clientFlags struct {
	setup, target, name, ca *string
}

func newClientFlags(fs *flag.FlagSet) clientFlags {
	return clientFlags{
		setup:  fs.String("setup", "", "label of the setup under test (direct, egressd, ...)"),
		target: fs.String("target", "198.51.100.10:443", "server address"),
		name:   fs.String("name", "bench.test", "TLS server name (SNI)"),
		ca:     fs.String("ca", "", "CA certificate written by `loadgen server`"),
	}
}

func (f clientFlags) client() (*client, error) {
	roots, err := loadRoots(*f.ca)
	if err != nil {
		return nil, err
	}
	// No ClientSessionCache: every handshake is a full one.
	cfg := &tls.Config{RootCAs: roots, ServerName: *f.name, CurvePreferences: curves}
	return &client{setup: *f.setup, target: *f.target, tls: cfg}, nil
}

// connect dials the target and completes the TLS handshake.
func (c *client) connect(ctx context.Context) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", c.target)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	tc := tls.Client(raw, c.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	return tc, nil
}

// ping runs PING/PONG on an established connection, then reads until the
// server closes, and closes.
func ping(tc *tls.Conn) error {
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if _, err := io.WriteString(tc, cmdPing+"\n"); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	line, err := bufio.NewReaderSize(tc, 64).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if line != pong {
		return fmt.Errorf("unexpected answer %q", line)
	}
	io.Copy(io.Discard, tc) // wait for the server's close
	return nil
}

// Result is one measurement, printed as one JSON line.
type Result struct {
	Setup       string  `json:"setup"`
	Metric      string  `json:"metric"`
	Gbps        float64 `json:"gbps,omitempty"`
	GbpsMin     float64 `json:"gbps_min,omitempty"`
	GbpsMax     float64 `json:"gbps_max,omitempty"`
	ConnsPerSec float64 `json:"conns_per_sec,omitempty"`
	P50us       float64 `json:"p50_us,omitempty"`
	P90us       float64 `json:"p90_us,omitempty"`
	P99us       float64 `json:"p99_us,omitempty"`
	RSSBefore   int64   `json:"rss_before_kib,omitempty"`
	RSSAfter    int64   `json:"rss_after_kib,omitempty"`
	KiBPerConn  float64 `json:"kib_per_conn,omitempty"`
	FDsBefore   int     `json:"fds_before,omitempty"`
	FDsAfter    int     `json:"fds_after,omitempty"`
	FDsPerConn  float64 `json:"fds_per_conn,omitempty"`
	Conns       int     `json:"conns"`
	Errors      int     `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	Seconds     float64 `json:"seconds"`
}

func (r Result) print() error {
	return json.NewEncoder(os.Stdout).Encode(r)
}
