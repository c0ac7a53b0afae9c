#!/usr/bin/env bash
# Makes the cluster's TLS material with openssl: a CA, and one certificate it signs for the silos and clients
# (PKCS#12 with its key, for --tls-certificate; the CA's certificate for --tls-ca). Usage: docker/make-certs.sh [DIR]
# (default: docker/certs); the .pfx password is in DIR/password. Existing files are kept.
set -euo pipefail
dir=${1:-$(dirname "$0")/certs}
mkdir -p "$dir"
cd "$dir"
[ -f password ] || openssl rand -hex 16 > password
if [ ! -f ca.key ]; then
  openssl req -x509 -newkey rsa:3072 -sha256 -days 825 -nodes -keyout ca.key -out ca.crt -subj "/CN=weft-cluster-ca" \
    2>/dev/null
fi
if [ ! -f silo.pfx ]; then
  openssl req -newkey rsa:3072 -sha256 -nodes -keyout silo.key -out silo.csr -subj "/CN=weft-silo" 2>/dev/null
  { echo "basicConstraints=CA:FALSE"; echo "keyUsage=digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"; } > silo.ext
  openssl x509 -req -in silo.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 -sha256 -extfile silo.ext \
    -out silo.crt 2>/dev/null
  openssl pkcs12 -export -in silo.crt -inkey silo.key -certfile ca.crt -out silo.pfx -passout "file:password"
  rm silo.csr silo.ext
fi
# PostgreSQL's password for the silos (Npgsql's Passfile, in pgpass's format), the server's own is the same file
[ -f pgpass ] || echo "postgres:5432:weft:weft:$(cat password)" > pgpass
# the silo runs as the image's non-root user (uid 1654): it must be able to read what it is given
chmod 644 ca.crt silo.pfx password pgpass
echo "certificates in $dir: ca.crt, silo.pfx (password in $dir/password)"
