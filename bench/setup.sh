#!/usr/bin/env bash
# Installs what `npm run bench` measures against and with, from Debian:
# nginx with its stream module (a service and a one-hop C proxy baseline),
# OpenSSH (the ssh -R baseline), wrk and iperf3 (the load generators).
set -euo pipefail
if [ -e /usr/lib/nginx/modules/ngx_stream_module.so ] && [ -x /usr/sbin/sshd ] && [ -x /usr/bin/ssh ] && [ -x /usr/bin/wrk ] && [ -x /usr/bin/iperf3 ]; then
  mkdir -p /run/sshd 2>/dev/null || true
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  nginx-light libnginx-mod-stream openssh-server openssh-client wrk iperf3 >/dev/null
$SUDO mkdir -p /run/sshd
