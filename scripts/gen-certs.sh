#!/bin/sh
# Makes a small PKI for flintlockd's TLS and mTLS with openssl (docs/security.md):
#   ca.crt ca.key            a CA (keep ca.key offline: whoever has it can mint clients)
#   server.crt server.key    the daemon's certificate, its SANs the names and addresses clients dial
#   client.crt client.key    a client certificate (for fl, or CAPMVM's TLS secret), signed by the CA
# EC P-256 keys, TLS 1.3 as flintlockd serves it. An existing CA in DIR is reused, so running it
# again with another --client NAME adds a client without touching the others' trust.
#
#   scripts/gen-certs.sh [--dir DIR] [--days N] [--san DNS:name|IP:addr]... [--client NAME]
#
# DIR defaults to /etc/opt/flintlockd/tls. Without --san the server certificate names this host:
# its hostname (and FQDN), localhost, 127.0.0.1, ::1 and every global address `ip` shows. With
# --san only the names given (give every name and IP clients will dial: CAPMVM dials the
# endpoint written in MicrovmCluster hosts[].endpoint and checks the certificate against it).
set -eu

DIR=/etc/opt/flintlockd/tls
DAYS=825
CLIENT=client
SANS=""
usage() { echo "usage: $0 [--dir DIR] [--days N] [--san DNS:name|IP:addr]... [--client NAME]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) [ $# -ge 2 ] || usage; DIR=$2; shift 2 ;;
    --days) [ $# -ge 2 ] || usage; DAYS=$2; shift 2 ;;
    --client) [ $# -ge 2 ] || usage; CLIENT=$2; shift 2 ;;
    --san)
      [ $# -ge 2 ] || usage
      case "$2" in DNS:?* | IP:?*) ;; *) echo "gen-certs.sh: --san takes DNS:name or IP:address, not \"$2\"" >&2; exit 2 ;; esac
      SANS="${SANS:+$SANS,}$2"; shift 2 ;;
    -h | --help) usage ;;
    *) usage ;;
  esac
done
case "$DAYS" in '' | *[!0-9]*) echo "gen-certs.sh: --days takes a number of days" >&2; exit 2 ;; esac
case "$CLIENT" in '' | *[!A-Za-z0-9._-]*) echo "gen-certs.sh: --client takes a name of letters, digits, '.', '_' and '-'" >&2; exit 2 ;; esac
command -v openssl >/dev/null || { echo "gen-certs.sh: openssl not found (Debian package openssl)" >&2; exit 1; }

if [ -z "$SANS" ]; then
  add() { case ",$SANS," in *",$1,"*) ;; *) SANS="${SANS:+$SANS,}$1" ;; esac; }
  host=$(hostname)
  add "DNS:$host"
  fqdn=$(hostname -f 2>/dev/null || true)
  [ -n "$fqdn" ] && add "DNS:$fqdn"
  add DNS:localhost
  add IP:127.0.0.1
  add IP:::1
  if command -v ip >/dev/null; then
    for a in $(ip -o addr show scope global | awk '{ sub(/\/.*/, "", $4); print $4 }'); do add "IP:$a"; done
  fi
fi

umask 077
mkdir -p "$DIR"
cd "$DIR"
cnf=$(mktemp "${TMPDIR:-/tmp}/gen-certs.XXXXXX")
trap 'rm -f "$cnf" server.csr "$CLIENT.csr"' EXIT
cat >"$cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $SANS
authorityKeyIdentifier = keyid
[client]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
EOF
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
sign() { # name cn profile
  key "$1.key"
  openssl req -new -config "$cnf" -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$DAYS" \
    -extfile "$cnf" -extensions "$3" -out "$1.crt" 2>/dev/null
}

if [ -f ca.crt ] && [ -f ca.key ]; then
  echo "using the CA in $DIR/ca.crt"
else
  key ca.key
  openssl req -new -x509 -config "$cnf" -extensions ca -key ca.key -subj "/CN=flintlockd CA" -days "$DAYS" -out ca.crt
  echo "wrote the CA: $DIR/ca.crt, $DIR/ca.key"
fi
sign server "$(hostname)" server
echo "wrote the server certificate: $DIR/server.crt, $DIR/server.key ($SANS)"
sign "$CLIENT" "$CLIENT" client
echo "wrote the client certificate: $DIR/$CLIENT.crt, $DIR/$CLIENT.key"
# The certificates are public; the keys stay 0600 (the daemon runs as root and reads them).
chmod 0644 ca.crt server.crt "$CLIENT.crt"
