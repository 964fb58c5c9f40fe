#!/usr/bin/env bash
# Regenerates the self-signed DEVELOPMENT certificate for sigyard (never for production):
#   dev-cert.pem        self-signed X.509 for sigyard.test (+ localhost, 127.0.0.1, ::1), 10 years
#   dev-key.pem         its ECDSA P-256 private key, PKCS#8 PEM
#   test-other-key.pem  an unrelated ECDSA P-256 key, used by tests for the "key does not match" path
#   test-dev-key-sec1.pem  dev-key.pem re-encoded as SEC1 ("EC PRIVATE KEY"), used by tests
# Usage: certs/generate.sh   (writes next to this script; needs the openssl CLI, 1.1.1 or newer)
set -euo pipefail

dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$dir"

days=3650

# `genpkey` writes PKCS#8 ("BEGIN PRIVATE KEY") directly.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out dev-key.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out test-other-key.pem
# `openssl ec` writes the SEC1 ("EC PRIVATE KEY") encoding.
openssl ec -in dev-key.pem -out test-dev-key-sec1.pem 2>/dev/null

openssl req -x509 -new \
  -key dev-key.pem \
  -sha256 \
  -days "$days" \
  -subj "/CN=sigyard.test/O=sigyard development" \
  -addext "subjectAltName=DNS:sigyard.test,DNS:localhost,IP:127.0.0.1,IP:::1" \
  -addext "basicConstraints=critical,CA:FALSE" \
  -addext "keyUsage=critical,digitalSignature" \
  -addext "extendedKeyUsage=serverAuth" \
  -out dev-cert.pem

chmod 644 dev-cert.pem dev-key.pem test-other-key.pem test-dev-key-sec1.pem
echo "wrote $dir/{dev-cert,dev-key,test-other-key,test-dev-key-sec1}.pem (valid $days days)"
