package main

import (
	"crypto/x509"
	"fmt"
	"os"
)

// loadRoots reads the CA PEM the server wrote.
func loadRoots(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no certificate", path)
	}
	return pool, nil
}
