// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// keyPair is a parsed certificate with its private key (the key may be nil).
type keyPair struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Key     crypto.Signer
	KeyPEM  []byte
}

// parsePrivateKey accepts PKCS#8 (any algorithm, also under Talos' "ED25519 PRIVATE KEY"
// block type), SEC1 EC and PKCS#1 RSA keys in PEM.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block in private key")
	}

	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
	}

	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return k, nil
	}

	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}

	if len(block.Bytes) == ed25519.PrivateKeySize {
		return ed25519.PrivateKey(block.Bytes), nil
	}

	return nil, fmt.Errorf("unsupported private key (PEM type %q)", block.Type)
}

func parseCertificate(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block in certificate")
	}

	return x509.ParseCertificate(block.Bytes)
}

func parseKeyPair(crtPEM, keyPEM []byte) (*keyPair, error) {
	cert, err := parseCertificate(crtPEM)
	if err != nil {
		return nil, err
	}

	kp := &keyPair{Cert: cert, CertPEM: crtPEM}

	if len(keyPEM) > 0 {
		kp.Key, err = parsePrivateKey(keyPEM)
		if err != nil {
			return nil, err
		}

		kp.KeyPEM = keyPEM
	}

	return kp, nil
}

// newKeyLike makes a fresh key of the same family as the issuer's key (Talos uses Ed25519
// for the OS CA and ECDSA for the Kubernetes CA).
func newKeyLike(issuer crypto.Signer) (crypto.Signer, error) {
	switch issuer.(type) {
	case ed25519.PrivateKey:
		_, k, err := ed25519.GenerateKey(rand.Reader)

		return k, err
	case *rsa.PrivateKey:
		return rsa.GenerateKey(rand.Reader, 2048)
	default:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
}

func pemKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}

	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

type certRequest struct {
	CommonName   string
	Organization []string
	IPs          []net.IP
	DNSNames     []string
	Server       bool
	Client       bool
	CA           bool
	Validity     time.Duration
}

// issue signs a new certificate for req with issuer (self-signed when issuer is nil).
func issue(req certRequest, issuer *keyPair) (*keyPair, error) {
	var (
		key crypto.Signer
		err error
	)

	if issuer != nil && issuer.Key != nil {
		key, err = newKeyLike(issuer.Key)
	} else {
		_, key, err = ed25519.GenerateKey(rand.Reader)
	}

	if err != nil {
		return nil, err
	}

	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}

	if req.Validity == 0 {
		req.Validity = 365 * 24 * time.Hour
	}

	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.CommonName, Organization: req.Organization},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(req.Validity),
		IPAddresses:  req.IPs,
		DNSNames:     req.DNSNames,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}

	if req.CA {
		tmpl.IsCA = true
		tmpl.BasicConstraintsValid = true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}

	if req.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}

	if req.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}

	parent, signer := tmpl, key
	if issuer != nil {
		if issuer.Key == nil {
			return nil, errors.New("issuer has no private key")
		}

		parent, signer = issuer.Cert, issuer.Key
	}

	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, err
	}

	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}

	keyPEM, err := pemKey(key)
	if err != nil {
		return nil, err
	}

	return &keyPair{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:     key,
		KeyPEM:  keyPEM,
	}, nil
}

func (kp *keyPair) tlsCertificate() (tls.Certificate, error) {
	return tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
}
