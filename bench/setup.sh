#!/usr/bin/env bash
# Installs what `npm run bench` measures against and with, from Debian:
# nginx with its stream module (a service and a one-hop C proxy baseline),
# OpenSSH (the ssh -R baseline), wrk and iperf3 (the load generators).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  nginx-light libnginx-mod-stream openssh-server openssh-client wrk iperf3 >/dev/null
$SUDO mkdir -p /run/sshd
