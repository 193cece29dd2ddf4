#!/usr/bin/env bash
# Install the PostgreSQL server binaries (initdb, pg_ctl, postgres) on a Debian or Ubuntu machine.
# The tests start their own throwaway server from them on a free loopback port
# (tests/fixtures/pgserver.py), so no cluster is created or started here. Idempotent.
set -euo pipefail

have_binaries() {
  command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && return 0
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

if have_binaries; then
  echo "postgres.sh: PostgreSQL server binaries already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Keep the package from creating (and trying to start) its own 'main' cluster.
$SUDO mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.d/adaptbench.conf >/dev/null

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends postgresql

have_binaries || { echo "postgres.sh: initdb not found after installing postgresql" >&2; exit 1; }
echo "postgres.sh: installed $(ls -d /usr/lib/postgresql/*/bin | tail -n1)"
