// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"
)

// trackedListener remembers accepted connections so that a node going down drops them,
// like a machine that reboots.
type trackedListener struct {
	net.Listener

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func (l *trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}

	l.mu.Lock()
	defer l.mu.Unlock()

	if l.closed {
		c.Close() //nolint:errcheck

		return nil, net.ErrClosed
	}

	l.conns[c] = struct{}{}

	return &lingerConn{Conn: &trackedConn{Conn: c, l: l}}, nil
}

func (l *trackedListener) Close() error {
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = map[net.Conn]struct{}{}
	l.mu.Unlock()

	err := l.Listener.Close()

	for c := range conns {
		c.Close() //nolint:errcheck
	}

	return err
}

type trackedConn struct {
	net.Conn
	l    *trackedListener
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c.Conn)
		c.l.mu.Unlock()
	})

	return c.Conn.Close()
}

func (n *Node) openListenerLocked() error {
	if n.lis != nil {
		return nil
	}

	raw, err := net.Listen("tcp", n.listenAddr())
	if err != nil {
		return err
	}

	n.lis = &trackedListener{Listener: raw, conns: map[net.Conn]struct{}{}}

	go func(l *trackedListener) {
		_ = n.sim.grpc.Serve(l) //nolint:errcheck
	}(n.lis)

	return nil
}

func (n *Node) closeListenerLocked() {
	if n.lis != nil {
		n.lis.Close() //nolint:errcheck
		n.lis = nil
	}
}

// tlsForClient picks the node by the local address of the connection: maintenance mode
// serves a self-signed certificate and asks for no client certificate; a configured node
// serves a certificate issued by its OS CA and requires a client certificate from it.
func (s *Sim) tlsForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	host, _, err := net.SplitHostPort(hello.Conn.LocalAddr().String())
	if err != nil {
		return nil, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()

	n := s.byAddr[host]
	if n == nil {
		return nil, fmt.Errorf("no simulated node at %s", host)
	}

	if !n.configuredLocked() {
		crt, err := n.maintCert.tlsCertificate()
		if err != nil {
			return nil, err
		}

		return &tls.Config{
			Certificates: []tls.Certificate{crt},
			ClientAuth:   tls.NoClientCert,
			NextProtos:   []string{"h2"},
			MinVersion:   tls.VersionTLS12,
		}, nil
	}

	kp, err := n.serverCertLocked()
	if err != nil {
		return nil, err
	}

	crt, err := kp.tlsCertificate()
	if err != nil {
		return nil, err
	}

	pool := x509.NewCertPool()
	pool.AddCert(n.cfg.OSCA.Cert)

	return &tls.Config{
		Certificates:          []tls.Certificate{crt},
		ClientAuth:            tls.RequireAndVerifyClientCert,
		ClientCAs:             pool,
		NextProtos:            []string{"h2"},
		MinVersion:            tls.VersionTLS12,
		VerifyPeerCertificate: verifyClientExtKeyUsage,
	}, nil
}

// verifyClientExtKeyUsage: like apid, the client certificate must be for client auth only.
func verifyClientExtKeyUsage(_ [][]byte, chains [][]*x509.Certificate) error {
	if len(chains) == 0 {
		return errors.New("no verified chains")
	}

	for _, cert := range chains[0] {
		if cert.IsCA {
			continue
		}

		if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
			return fmt.Errorf("certificate %q is missing the client auth extended key usage", cert.Subject)
		}
	}

	return nil
}

// serverCertLocked issues (once per OS CA) the node's apid certificate. Workers carry the
// CA certificate without its key; like trustd, a control plane of the same cluster signs.
func (n *Node) serverCertLocked() (*keyPair, error) {
	if n.cfg.OSCA == nil {
		return nil, errNoOSCA
	}

	caPEM := string(n.cfg.OSCA.CertPEM)
	if n.serverCert != nil && n.serverCA == caPEM {
		return n.serverCert, nil
	}

	issuer := n.cfg.OSCA
	if issuer.Key == nil {
		issuer = nil

		for _, o := range n.sim.nodes {
			if o.cfg != nil && o.cfg.OSCA != nil && o.cfg.OSCA.Key != nil && bytes.Equal(o.cfg.OSCA.Cert.Raw, n.cfg.OSCA.Cert.Raw) {
				issuer = o.cfg.OSCA

				break
			}
		}
	}

	req := certRequest{
		CommonName: n.hostnameLocked(),
		IPs:        []net.IP{net.ParseIP(n.addr())},
		DNSNames:   []string{n.hostnameLocked()},
		Server:     true,
	}

	for _, san := range n.cfg.CertSANs {
		if ip := net.ParseIP(san); ip != nil {
			req.IPs = append(req.IPs, ip)
		} else {
			req.DNSNames = append(req.DNSNames, san)
		}
	}

	// With no signer available (a worker applied before any control plane), serve a
	// self-signed certificate: clients then fail verification, as with a worker whose
	// trustd request has not been answered.
	kp, err := issue(req, issuer)
	if err != nil {
		return nil, err
	}

	if issuer != nil {
		n.serverCert, n.serverCA = kp, caPEM
	}

	return kp, nil
}

// lingerCreds keeps a connection open briefly when the TLS handshake fails, so that the
// client reads the server's alert (e.g. "tls: certificate required" when talosctl
// --insecure talks to a configured node) instead of a racy "broken pipe".
type lingerCreds struct {
	credentials.TransportCredentials
}

func (l *lingerCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c, ai, err := l.TransportCredentials.ServerHandshake(raw)
	if lc, ok := raw.(*lingerConn); ok && err == nil {
		lc.done.Store(true)
	}

	return c, ai, err
}

func (l *lingerCreds) Clone() credentials.TransportCredentials {
	return &lingerCreds{TransportCredentials: l.TransportCredentials.Clone()}
}

type lingerConn struct {
	net.Conn
	done atomic.Bool
}

func (c *lingerConn) Close() error {
	if c.done.Load() {
		return c.Conn.Close()
	}

	go func() {
		time.Sleep(300 * time.Millisecond)
		c.Conn.Close() //nolint:errcheck
	}()

	return nil
}
