#!/bin/sh
# A private CA and the Kafka broker's certificate, for compose (service kafka-tls) or by hand.
#   make-certs.sh DIR [BROKER_UID]
# writes DIR/ca/ca.pem (the CA certificate every client trusts) and DIR/broker/broker.pem (the broker's
# unencrypted PKCS#8 key and certificate, Kafka's PEM keystore) with DIR/broker/ca.pem beside it.
# The CA key is deleted once the broker certificate is signed: nothing can sign another certificate.
# To rotate, delete both folders (compose: the kafka-ca and kafka-broker-tls volumes) and run it again.
set -eu
out=${1:?usage: make-certs.sh DIR [BROKER_UID]}
uid=${2:-${BROKER_UID:-}}
hosts=${KAFKA_CERT_NAMES:-DNS:kafka,DNS:localhost,IP:127.0.0.1}  # compose's name; localhost for its healthcheck
if [ -s "$out/broker/broker.pem" ] && [ -s "$out/ca/ca.pem" ]; then
  echo "make-certs: $out already holds a CA and a broker certificate"
  exit 0
fi
umask 077
mkdir -p "$out/ca" "$out/broker"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days 825 -subj "/CN=tonewatch-kafka-ca" \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey rsa:3072 -nodes -sha256 -subj "/CN=kafka" \
  -keyout "$work/broker.key" -out "$work/broker.csr" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$hosts" > "$work/ext.cnf"
openssl x509 -req -sha256 -days 825 -in "$work/broker.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
  -CAcreateserial -extfile "$work/ext.cnf" -out "$work/broker.crt" 2>/dev/null
cat "$work/broker.key" "$work/broker.crt" > "$out/broker/broker.pem"
cp "$work/ca.pem" "$out/broker/ca.pem"  # the broker checks its own certificate on inter-broker connections
cp "$work/ca.pem" "$out/ca/ca.pem"
chmod 0644 "$out/ca/ca.pem" "$out/broker/ca.pem"
chmod 0400 "$out/broker/broker.pem"
chmod 0755 "$out/ca"
if [ -n "$uid" ]; then
  chown "$uid" "$out/broker" "$out/broker/broker.pem" "$out/broker/ca.pem"
fi
echo "make-certs: wrote $out/ca/ca.pem and $out/broker/broker.pem ($hosts)"
