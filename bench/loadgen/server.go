package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/egressd/egressd/internal/testcert"
)

// chunk is the size of the server's bulk writes.
const chunk = 64 << 10

// serverCmd is `loadgen server -listen ADDR -name NAME -ca FILE`: a TLS
// server for NAME that writes its CA to FILE once it listens.
func serverCmd(args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	listen := fs.String("listen", "198.51.100.10:443", "TCP address")
	name := fs.String("name", "bench.test", "server name")
	caFile := fs.String("ca", "", "write the CA certificate (PEM) here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cert, caPEM, err := testcert.New("egressd bench", []string{*name})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if err := os.WriteFile(*caFile, caPEM, 0o644); err != nil {
		return fmt.Errorf("write CA: %w", err)
	}
	cfg := &tls.Config{
		Certificates:           []tls.Certificate{cert},
		CurvePreferences:       curves,
		SessionTicketsDisabled: true, // every handshake is a full one
	}
	payload := make([]byte, chunk)
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			time.Sleep(10 * time.Millisecond) // EMFILE: back off
			continue
		}
		go serveConn(tls.Server(c, cfg), payload)
	}
}

// serveConn runs the bench protocol on one connection.
func serveConn(c *tls.Conn, payload []byte) {
	defer c.Close()
	line, err := bufio.NewReaderSize(c, 64).ReadString('\n')
	if err != nil {
		return // idle connection closed by the client, or a failed handshake
	}
	cmd, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
	switch cmd {
	case cmdPing:
		io.WriteString(c, pong)
	case cmdBulk:
		n, err := strconv.ParseInt(arg, 10, 64)
		if err == nil {
			sendBulk(c, payload, n)
		}
	}
}

func sendBulk(w io.Writer, payload []byte, n int64) {
	for n > 0 {
		p := payload
		if int64(len(p)) > n {
			p = p[:n]
		}
		if _, err := w.Write(p); err != nil {
			return
		}
		n -= int64(len(p))
	}
}
