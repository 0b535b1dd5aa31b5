package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// zoneFlag collects -zone NAME=ADDR[,ADDR...].
type zoneFlag map[string][]netip.Addr

func (z zoneFlag) String() string { return fmt.Sprint(map[string][]netip.Addr(z)) }

func (z zoneFlag) Set(s string) error {
	name, list, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return errors.New("want NAME=ADDR[,ADDR...]")
	}
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	for _, a := range strings.Split(list, ",") {
		addr, err := netip.ParseAddr(a)
		if err != nil {
			return err
		}
		z[name] = append(z[name], addr)
	}
	return nil
}

// say prints one event line; the script greps them.
var say = log.New(os.Stdout, "internet: ", 0).Printf

func serveCmd(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	zone := zoneFlag{}
	fs.Var(zone, "zone", "NAME=ADDR[,ADDR...]: a DNS name and the certificate names (repeatable)")
	caFile := fs.String("ca", "", "write the CA certificate clients should trust here (required)")
	dnsAddr := fs.String("dns", "198.51.100.53:53", "DNS server address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *caFile == "" || len(zone) == 0 {
		return errors.New("serve: -ca and at least one -zone are required")
	}
	cert, err := newCert(zone, *caFile)
	if err != nil {
		return err
	}
	errc := make(chan error, 8)
	for _, fam := range []string{"4", "6"} {
		go func() { errc <- serveTLS("tcp"+fam, ":443", cert) }()
		go func() { errc <- serveHTTP("tcp"+fam, ":80") }()
		go func() { errc <- serveSink("tcp"+fam, ":9000") }()
		go func() { errc <- serveUDP("udp"+fam, ":9001") }()
	}
	go func() { errc <- serveDNS(*dnsAddr, zone) }()
	return <-errc
}

func serveTLS(network, addr string, cert tls.Certificate) error {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	cfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		say("tls  to %s sni=%q", h.Conn.LocalAddr(), h.ServerName)
		return nil, nil
	}
	return quiet(http.Serve(tls.NewListener(ln, cfg), handler("https")))
}

func serveHTTP(network, addr string) error {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return err
	}
	return quiet(http.Serve(ln, handler("http")))
}

// handler answers "hello", or ?size=N zero bytes: a package to download.
func handler(scheme string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		say("%-5s to %s host=%q %s %s", scheme, r.Context().Value(http.LocalAddrContextKey), r.Host, r.Method, r.URL.RequestURI())
		if n, err := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64); err == nil && n > 0 {
			w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
			io.CopyN(w, zeros{}, n)
			return
		}
		fmt.Fprintf(w, "hello from %s\n", r.Host)
	})
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// serveSink prints every line received on a TCP connection and echoes it.
func serveSink(network, addr string) error {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go sinkConn(c)
	}
}

func sinkConn(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			say("tcp  to %s data=%q", c.LocalAddr(), line)
			io.WriteString(c, "ok "+line)
		}
		if err != nil {
			return
		}
	}
}

func serveUDP(network, addr string) error {
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		return err
	}
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		say("udp  from %s data=%q", from, buf[:n])
		pc.WriteTo(append([]byte("ok "), buf[:n]...), from)
	}
}

// quiet drops the error http.Serve returns on a closed listener.
func quiet(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
