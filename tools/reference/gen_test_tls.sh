#!/usr/bin/env bash
# Writes the throw-away TLS material of tests/test_create_dataset.cpp (https with --ca-cert):
# a private CA and a certificate for 127.0.0.1 / localhost signed by it, valid 100 years.
# Test-only keys: never use them for anything else.
set -euo pipefail
d=tests/fixtures/harvest/tls
mkdir -p "$d"
openssl req -x509 -newkey rsa:2048 -nodes -days 36500 -subj "/CN=inspire-classifier test CA" \
  -keyout "$d/ca.key" -out "$d/ca.pem"
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$d/server.key" -out "$d/server.csr"
printf "subjectAltName=IP:127.0.0.1,DNS:localhost\n" > "$d/ext.cnf"
openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 36500 \
  -extfile "$d/ext.cnf" -out "$d/server.pem"
rm -f "$d/server.csr" "$d/ext.cnf" "$d/ca.srl" "$d/ca.key"
