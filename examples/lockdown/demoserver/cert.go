package main

import (
	"crypto/tls"
	"fmt"
	"os"

	"github.com/egressd/egressd/internal/testcert"
)

// newCert makes a self-signed certificate (its own CA) for every name in
// zone and writes it to caFile in PEM for the clients.
func newCert(zone zoneFlag, caFile string) (tls.Certificate, error) {
	var names []string
	for n := range zone {
		names = append(names, n)
	}
	cert, caPEM, err := testcert.New("egressd lock-down demo", names)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		return tls.Certificate{}, fmt.Errorf("write CA: %w", err)
	}
	return cert, nil
}
