package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	xproxy "golang.org/x/net/proxy"
)

// handshakeTimeout bounds connect + TLS handshake of one connection.
const handshakeTimeout = 5 * time.Second

// client holds what every client subcommand shares: where to connect, as
// which name, and the label of the setup under test.
type client struct {
	setup  string
	target string
	tls    *tls.Config
	proxy  *url.URL // explicit proxy (socks5:// or http://); nil: connect to target
}

// clientFlags registers the shared flags on fs; call init after Parse.
type clientFlags struct {
	setup, target, name, ca, proxy *string
}

func newClientFlags(fs *flag.FlagSet) clientFlags {
	return clientFlags{
		setup:  fs.String("setup", "", "label of the setup under test (direct, egressd, ...)"),
		target: fs.String("target", "198.51.100.10:443", "server address"),
		name:   fs.String("name", "bench.test", "TLS server name (SNI)"),
		ca:     fs.String("ca", "", "CA certificate written by `loadgen server`"),
		proxy: fs.String("proxy", "", "explicit proxy to ask for name:port of -target: socks5://host:port "+
			"(the name sent as a name) or http://host:port (CONNECT)"),
	}
}

func (f clientFlags) client() (*client, error) {
	roots, err := loadRoots(*f.ca)
	if err != nil {
		return nil, err
	}
	// No ClientSessionCache: every handshake is a full one.
	cfg := &tls.Config{RootCAs: roots, ServerName: *f.name, CurvePreferences: curves}
	c := &client{setup: *f.setup, target: *f.target, tls: cfg}
	if *f.proxy != "" {
		u, err := url.Parse(*f.proxy)
		if err != nil || (u.Scheme != "socks5" && u.Scheme != "http") {
			return nil, fmt.Errorf("-proxy %q: want socks5://host:port or http://host:port", *f.proxy)
		}
		c.proxy = u
	}
	return c, nil
}

// dial opens the connection TLS runs over: to the target, or through the
// explicit proxy to the target's port at the TLS name.
func (c *client) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	if c.proxy == nil {
		return d.DialContext(ctx, "tcp", c.target)
	}
	_, port, _ := net.SplitHostPort(c.target)
	dest := net.JoinHostPort(c.tls.ServerName, port)
	if c.proxy.Scheme == "socks5" {
		sd, err := xproxy.SOCKS5("tcp", c.proxy.Host, nil, &d)
		if err != nil {
			return nil, err
		}
		return sd.(xproxy.ContextDialer).DialContext(ctx, "tcp", dest)
	}
	conn, err := d.DialContext(ctx, "tcp", c.proxy.Host)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", dest, dest)
	br := bufio.NewReaderSize(conn, 512)
	res, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err == nil && res.StatusCode != http.StatusOK {
		err = fmt.Errorf("CONNECT: %s", res.Status)
	}
	if err == nil && br.Buffered() > 0 {
		err = errors.New("CONNECT: bytes after the response")
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// connect dials the target and completes the TLS handshake.
func (c *client) connect(ctx context.Context) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	raw, err := c.dial(ctx)
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
	// The proxy's CPU time (user + system, its children's included) per
	// connection of the rate measure and per GiB of the bulk measure,
	// median round; 0 without -pid.
	CPUusPerConn float64 `json:"cpu_us_per_conn,omitempty"`
	CPUmsPerGiB  float64 `json:"cpu_ms_per_gib,omitempty"`
	Conns        int     `json:"conns"`
	Errors       int     `json:"errors"`
	FirstError   string  `json:"first_error,omitempty"`
	Seconds      float64 `json:"seconds"`
}

func (r Result) print() error {
	return json.NewEncoder(os.Stdout).Encode(r)
}
