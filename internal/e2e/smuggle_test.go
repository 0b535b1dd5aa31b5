package e2e

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// A lenient backend, for the request smuggling tests: it reads request
// heads one after another and never reads a body, as Python's
// http.server does for GET and for methods it does not implement, and
// records the Host of every request it sees.
func init() {
	zone["lenient.allowed.test."] = []string{"198.51.100.79"}
}

func (e *env) startLenient(t *testing.T) *recorder {
	t.Helper()
	e.tp.AddInternetAddr("198.51.100.79/32")
	var ln net.Listener
	if err := e.tp.Do(e.tp.Internet, func() (err error) {
		ln, err = net.Listen("tcp", "198.51.100.79:8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	rec := &recorder{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if strings.TrimSpace(line) == "" {
						continue
					}
					target, host := strings.Fields(line + " -")[1], ""
					for {
						h, err := br.ReadString('\n')
						if err != nil || strings.TrimSpace(h) == "" {
							break
						}
						if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(k, "host") {
							host = strings.TrimSpace(v)
						}
					}
					rec.add("lenient host=%s target=%s", host, target)
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	return rec
}

// TestHTTPDesync: requests whose body a lenient backend reads as a second
// request (CL.0) never get that second request to the backend; plain
// requests with ordinary bodies still pass.
func TestHTTPDesync(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	rec := e.startLenient(t)
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: evil.test\r\n\r\n"
	send := func(raw string) {
		e.tp.Do(e.tp.Sandbox, func() error {
			c, err := net.DialTimeout("tcp", "198.51.100.79:8080", 2*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Second))
			c.Write([]byte(raw))
			buf := make([]byte, 4096)
			for { // read until the proxy or the backend closes
				if _, err := c.Read(buf); err != nil {
					return nil
				}
			}
		})
	}
	head := func(method, path string, n int) string {
		return fmt.Sprintf("%s %s HTTP/1.1\r\nHost: lenient.allowed.test:8080\r\nContent-Length: %d\r\n\r\n", method, path, n)
	}
	// Positive: the backend sees a checked request with an ordinary body.
	send(head("POST", "/json", 7) + `{"a":1}`)
	deadline := time.Now().Add(3 * time.Second)
	for len(rec.matching("host=lenient.allowed.test:8080 target=/json")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the lenient backend got no request; saw %q", rec.all())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, tc := range []struct{ name, raw string }{
		{"GET with a body", head("GET", "/outer", len(smuggled)) + smuggled},
		{"POST to a backend that ignores it", head("POST", "/outer", len(smuggled)) + smuggled},
		{"DELETE with a body", head("DELETE", "/outer", len(smuggled)) + smuggled},
		{"empty lines first", head("POST", "/outer", len(smuggled)+2) + "\r\n" + smuggled},
		{"chunked GET", "GET /outer HTTP/1.1\r\nHost: lenient.allowed.test:8080\r\nTransfer-Encoding: chunked\r\n\r\n" +
			fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(smuggled), smuggled)},
	} {
		send(tc.raw)
		if got := rec.matching("host=evil.test"); len(got) > 0 {
			t.Errorf("leak: %s: the backend served %q", tc.name, got)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if got := rec.matching("/smuggled"); len(got) > 0 {
		t.Errorf("leak: the backend saw %q", got)
	}
	if !strings.Contains(e.logs.String(), `"reason":"unsafe-http"`) {
		t.Errorf("no denial logged with reason unsafe-http")
	}
}
