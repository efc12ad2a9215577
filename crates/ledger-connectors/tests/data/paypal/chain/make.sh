#!/bin/sh
# Regenerates the PayPal offline-verification chain used by tests/it/paypal.rs (openssl 3):
# a root CA, an intermediate CA, PayPal's webhook certificate (SAN
# messageverificationcerts.paypal.com), the same key self-signed, and a certificate for
# another name under the same intermediate; signature.b64 is the leaf key's SHA256withRSA
# signature of the signed string of ../offline-body.json (see `offline_headers`).
set -eu
cd "$(dirname "$0")"
work=$(mktemp -d)
days=3650
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/root.key" -subj "/CN=Ledger Test Root CA" \
  -days $days -addext basicConstraints=critical,CA:true -addext keyUsage=critical,keyCertSign,cRLSign \
  -outform der -out root.der
openssl req -newkey rsa:2048 -nodes -keyout "$work/intermediate.key" -subj "/CN=Ledger Test Intermediate CA" \
  -out "$work/intermediate.csr"
printf 'basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\n' > "$work/ca.ext"
openssl x509 -req -in "$work/intermediate.csr" -CA root.der -CAform der -CAkey "$work/root.key" \
  -CAcreateserial -days $days -extfile "$work/ca.ext" -outform der -out intermediate.der
openssl genrsa -out "$work/leaf.key" 2048
leaf() { # name, subject alternative name
  openssl req -new -key "$work/leaf.key" -subj "/CN=$2" -out "$work/$1.csr"
  printf 'basicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature\nsubjectAltName=DNS:%s\n' "$2" \
    > "$work/$1.ext"
  openssl x509 -req -in "$work/$1.csr" -CA intermediate.der -CAform der -CAkey "$work/intermediate.key" \
    -CAcreateserial -days $days -extfile "$work/$1.ext" -outform der -out "$1.der"
}
leaf leaf messageverificationcerts.paypal.com
leaf wrong-subject messageverificationcerts.attacker.example
openssl req -x509 -key "$work/leaf.key" -subj "/CN=messageverificationcerts.paypal.com" -days $days \
  -addext subjectAltName=DNS:messageverificationcerts.paypal.com -outform der -out self-signed.der
crc=$(python3 -c 'import zlib,sys; print(zlib.crc32(open(sys.argv[1],"rb").read()))' ../offline-body.json)
printf '%s' "0b1e9a40-f7c1-11f0-9c6e-000000000001|2026-03-02T10:00:05Z|8LEDGERWEBHOOK01|$crc" \
  | openssl dgst -sha256 -sign "$work/leaf.key" | base64 -w0 > signature.b64
rm -rf "$work" ./*.srl
