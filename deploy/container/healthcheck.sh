#!/bin/bash
# healthcheck HOST PORT PATH: exit 0 when GET PATH on the admin listener answers 200 within
# 3 s, else 1. bash's /dev/tcp only, so that the image needs no HTTP client.
set -u
host=${1:-127.0.0.1} port=${2:-9901} path=${3:-/healthz}
exec 3<>"/dev/tcp/${host}/${port}" || exit 1
printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$host" >&3
IFS= read -r -t 3 status <&3 || exit 1
case "$status" in
  "HTTP/1."[01]" 200 "*) exit 0 ;;
  *) echo "healthcheck: $path: ${status%$'\r'}" >&2; exit 1 ;;
esac
