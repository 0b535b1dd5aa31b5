package e2e

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/netnstest"
	"github.com/egressd/egressd/internal/testcert"
)

// pgSandbox allows the names of two Debian PostgreSQL servers in the
// internet namespace: db.test (TLS on) and nossl.test (TLS off).
const pgSandbox = `
[[sandbox]]
name      = "sb1"
interface = "veth-sb1"
sources   = ["10.231.0.2/32", "fd00:231::2/128"]
mode      = "custom"
allow_domains = ["db.test", "nossl.test"]
`

// pgServer is a running PostgreSQL server.
type pgServer struct {
	logFile string
}

// connections counts the connections the server received.
func (p *pgServer) connections() int {
	b, _ := os.ReadFile(p.logFile)
	return strings.Count(string(b), "connection received:")
}

func pgBin(t *testing.T) string {
	t.Helper()
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(matches) == 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("PostgreSQL server not installed (Debian package postgresql)")
		}
		t.Skip("PostgreSQL server not installed")
	}
	return filepath.Dir(matches[len(matches)-1])
}

// startPostgres runs a cluster listening on addr:5432 in the internet
// namespace, with TLS (a certificate for db.test from the CA in caPEM's
// pair) when tlsOn, trusting every client.
func startPostgres(t *testing.T, e *env, addr string, tlsOn bool, cert tls.Certificate) *pgServer {
	t.Helper()
	needTool(t, "runuser")
	bin := pgBin(t)
	dir := scratchDir(t)
	data := filepath.Join(dir, "data")
	asPG := func(args ...string) *exec.Cmd {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--"}, args...)...)
	}
	os.Chown(dir, pgUID(t), -1)
	if out, err := asPG(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte("hostssl all all 0.0.0.0/0 trust\nhost all all 0.0.0.0/0 trust\n"), 0o600)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	keyDER, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"server.crt": certPEM, "server.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})} {
		path := filepath.Join(data, name)
		os.WriteFile(path, b, 0o600)
		os.Chown(path, pgUID(t), -1)
	}
	os.Chown(filepath.Join(data, "pg_hba.conf"), pgUID(t), -1)
	ssl := "off"
	if tlsOn {
		ssl = "on"
	}
	p := &pgServer{logFile: filepath.Join(dir, "postgres.log")}
	logf, err := os.Create(p.logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := e.tp.Command(e.tp.Internet, "runuser", "-u", "postgres", "--", filepath.Join(bin, "postgres"), "-D", data,
		"-c", "listen_addresses="+addr, "-c", "port=5432", "-c", "unix_socket_directories="+dir,
		"-c", "ssl="+ssl, "-c", "log_connections=on", "-c", "fsync=off")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, _ := os.ReadFile(p.logFile)
		if strings.Contains(string(b), "ready to accept connections") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("postgres on %s not ready:\n%s", addr, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

func pgUID(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("id", "-u", "postgres").Output()
	if err != nil {
		t.Fatalf("no postgres user: %v", err)
	}
	var uid int
	fmt.Sscan(string(out), &uid)
	return uid
}

// TestPostgresSTARTTLS: psql with sslmode=require and verify-full reaches
// an allowed name through egressd, which answers the SSLRequest, judges
// the SNI and opens TLS with the server itself; a denied name, a
// plain-text startup and a server that refuses TLS never get a session,
// and a GSSENCRequest is answered N.
func TestPostgresSTARTTLS(t *testing.T) {
	needTool(t, "psql")
	e := newIdleEnv(t, pgSandbox)
	e.tp.AddInternetAddr("198.51.100.20/32", "198.51.100.21/32")
	cert, caPEM, err := testcert.New("egressd postgres e2e", []string{"db.test", "nossl.test", "evil.test"})
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(scratchDir(t), "ca.pem")
	os.WriteFile(ca, caPEM, 0o644)
	db := startPostgres(t, e, "198.51.100.20", true, cert)
	nossl := startPostgres(t, e, "198.51.100.21", false, cert)
	e.start()

	psql := func(conn string) (string, error) {
		return e.sandbox("psql", "-X", "-Atc", "select 'pg-'||'ok'", conn+" port=5432 user=postgres dbname=postgres connect_timeout=5")
	}
	for _, mode := range []string{"sslmode=require", "sslmode=verify-full sslrootcert=" + ca} {
		out, err := psql("host=db.test hostaddr=198.51.100.20 " + mode)
		if err != nil || !strings.Contains(out, "pg-ok") {
			t.Errorf("psql %s to db.test: %v\n%s", mode, err, out)
		}
	}
	allowed := db.connections()
	if allowed != 2 {
		t.Errorf("db.test received %d connections, want 2", allowed)
	}
	denied := []struct{ what, conn, want string }{
		{"a denied name (SNI evil.test) at db.test's address", "host=evil.test hostaddr=198.51.100.20 sslmode=require", "access denied"},
		{"a plain-text startup", "host=db.test hostaddr=198.51.100.20 sslmode=disable", ""},
		{"a server that refuses TLS", "host=nossl.test hostaddr=198.51.100.21 sslmode=require", "handshake failure"},
	}
	for _, d := range denied {
		out, err := psql(d.conn)
		if err != nil {
			t.Logf("%s: %s", d.what, err.Error()[strings.LastIndex(err.Error(), "psql:"):])
		}
		if err == nil || strings.Contains(out, "pg-ok") || !strings.Contains(err.Error(), d.want) {
			t.Errorf("%s: psql %v, want an error with %q:\n%s", d.what, err, d.want, out)
		}
	}
	if n := db.connections(); n != allowed {
		t.Errorf("leak: db.test received %d connections after the denied ones, want %d", n, allowed)
	}
	if n := nossl.connections(); n != 1 { // egressd's SSLRequest, answered N
		t.Errorf("nossl.test received %d connections, want 1 (egressd's SSLRequest)", n)
	}
	for _, want := range []string{`"name":"evil.test","verdict":"deny","reason":"no-match"`, "postgres: a plain-text startup message",
		"postgres: the server answered the SSLRequest with N"} {
		if !strings.Contains(e.logs.String(), want) {
			t.Errorf("log lacks %s", want)
		}
	}

	// GSSENCRequest: egressd answers N, and the client's SSLRequest that
	// follows opens TLS with the real server.
	err = netnstest.Do(e.tp.Sandbox, func() error {
		c, err := net.DialTimeout("tcp", "198.51.100.20:5432", 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 1)
		for _, step := range []struct {
			req  []byte
			want byte
		}{{[]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30}, 'N'}, {[]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}, 'S'}} {
			c.Write(step.req)
			if _, err := io.ReadFull(c, b); err != nil || b[0] != step.want {
				return fmt.Errorf("answer %q %v, want %q", b, err, step.want)
			}
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		return tls.Client(c, &tls.Config{ServerName: "db.test", RootCAs: pool}).Handshake()
	})
	if err != nil {
		t.Errorf("GSSENCRequest, then SSLRequest and TLS to db.test: %v", err)
	}
}
