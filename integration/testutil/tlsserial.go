package testutil

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
)

// SerialServer is a real mutual-TLS listener on loopback that answers each
// connection with the serial number of the client certificate it verified:
// tests of certificate renewal and CA trust see which certificate a client
// presented. It closes with the test.
func SerialServer(t testing.TB, serverCert tls.Certificate, clientCAs *x509.CertPool) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{serverCert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				if tc.Handshake() != nil {
					return
				}
				_, _ = tc.Write([]byte(tc.ConnectionState().PeerCertificates[0].SerialNumber.String() + "\n"))
			}()
		}
	}()
	return l.Addr().String()
}

// DialSerial dials a SerialServer with cfg and returns the serial it saw.
func DialSerial(addr string, cfg *tls.Config) (string, error) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	b := make([]byte, 64)
	n, err := c.Read(b)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b[:n])), nil
}
