#!/usr/bin/env bash
# Installs the real peers the tests run against, from Debian, if any is
# missing: nginx (a PaaS router, an HTTPS router, a WebSocket-only proxy),
# OpenSSH (the seed's use case), openssl (a test CA), curl, tinyproxy (an
# HTTP CONNECT proxy) and iproute2 (network namespaces). `npm test` runs it
# first. As root with apt-get it installs what is missing; otherwise it
# says what is, and the tests that need it skip, saying why.
set -euo pipefail

has() { [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ] || [ -x "/sbin/$1" ] || [ -x "/bin/$1" ]; }

need=()
has nginx || need+=(nginx-light)
has sshd || need+=(openssh-server)
has ssh || need+=(openssh-client)
has openssl || need+=(openssl)
has curl || need+=(curl)
has tinyproxy || need+=(tinyproxy)
has ip || need+=(iproute2)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "test/setup.sh: installing ${need[*]} from Debian for the tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "test/setup.sh: missing ${need[*]}; the tests that need them will skip (as root, bash test/setup.sh installs them)" >&2
fi
