#!/usr/bin/env bash
# Makes sure the services the cluster-backend tests use are up on loopback:
# PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379. Starts the
# machine's own installations if they are down, and installs from Debian's
# packages what tests start processes of their own from: haproxy (the
# load-balancer test), redis-server (the Sentinel failover test runs its own
# primary, replicas and Sentinels) and the PostgreSQL server binaries (the
# restart test runs its own database), and tmux (the chat test drives two
# `wisp chat` windows in it), nginx (the test of the shipped nginx.conf),
# and chromium (the web app's browser tests).
# Tests of
# the cluster backend say "skipped: no PostgreSQL at ..." outside CI when a
# service is missing, and fail with CI=true.
set -uo pipefail

say() { printf 'ensure-services: %s\n' "$*"; }

if command -v pg_isready >/dev/null 2>&1; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    say "PostgreSQL is down; starting it"
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
      for version in $(ls /etc/postgresql); do
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
      done
    fi
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  pg_isready -q -h 127.0.0.1 -p 5432 && say "PostgreSQL is up" || say "PostgreSQL is NOT reachable on 127.0.0.1:5432"
else
  say "no PostgreSQL client tools here (pg_isready); cluster tests will report it"
fi

if command -v redis-cli >/dev/null 2>&1; then
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    say "Redis is down; starting it"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
    for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
  fi
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && say "Redis is up" || say "Redis is NOT reachable on 127.0.0.1:6379"
else
  say "no Redis tools here (redis-cli); cluster tests will report it"
fi
# HAProxy, from Debian's packages, for the load-balancer test (it runs its
# own instance on a free loopback port; the packaged service stays off).
if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
  if command -v apt-get >/dev/null 2>&1; then
    say "installing haproxy"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy) >/dev/null 2>&1 \
      || say "could not install haproxy; the load-balancer test will report it"
  fi
fi
[ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null 2>&1 && say "haproxy is installed"

apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  say "installing $*"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@") >/dev/null 2>&1
}
command -v redis-server >/dev/null 2>&1 || apt_install redis-server \
  || say "could not install redis-server; the failover test will report it"
command -v redis-server >/dev/null 2>&1 && say "redis-server is installed (Sentinel test)"
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  apt_install postgresql || say "could not install postgresql; the restart test will report it"
fi
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 && say "PostgreSQL server binaries are installed (restart test)"
command -v tmux >/dev/null 2>&1 || apt_install tmux \
  || say "could not install tmux; the chat test will report it"
command -v tmux >/dev/null 2>&1 && say "tmux is installed (chat test)"
# nginx, for the test of the shipped nginx.conf (it runs its own instance
# on a free loopback port; the packaged service, started by the install,
# is stopped again).
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  if apt_install nginx; then
    (service nginx stop || /usr/sbin/nginx -s quit) >/dev/null 2>&1 || true
  else
    say "could not install nginx; the nginx test will report it"
  fi
fi
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 && say "nginx is installed (balancer test)"
# Chromium, from Debian's packages, for the web app's browser tests
# (playwright-core drives /usr/bin/chromium; no browser is ever downloaded).
[ -x /usr/bin/chromium ] || apt_install chromium \
  || say "could not install chromium; the browser tests will report it"
[ -x /usr/bin/chromium ] && say "chromium is installed (browser tests)"
exit 0
