#!/usr/bin/env bash
# System packages agentflux needs: a Java runtime and Maven (the local Apache Kafka), podman,
# runc and busybox-static (a local Docker Engine API for the container pool), Prometheus and
# promtool (the scrape, rule and freshness tests), Chromium (the HTML report's rendering test).
# Installs them with apt-get when running as root on Debian; otherwise says what to install.
set -euo pipefail
missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
# the Docker Engine API for the container pool: podman serves it (runc; busybox for a local image)
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v busybox >/dev/null 2>&1 || missing+=(busybox-static)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
# headless Chromium: the report's rendering test (and its screenshot in README.md)
{ command -v chromium || command -v chromium-browser; } >/dev/null 2>&1 || missing+=(chromium)
# Prometheus 2.x: the server and promtool (one Debian package gives both)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "agentflux: missing system packages: ${missing[*]} (Debian: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
