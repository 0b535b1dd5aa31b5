package testcert

import (
	"crypto/x509"
	"testing"
)

func TestNewVerifies(t *testing.T) {
	cert, caPEM, err := New("test", []string{"a.test", "*.b.test"})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("PEM holds no certificate")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for name, ok := range map[string]bool{"a.test": true, "x.b.test": true, "c.test": false} {
		_, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots})
		if (err == nil) != ok {
			t.Errorf("verify for %s: %v, want ok=%v", name, err, ok)
		}
	}
}
