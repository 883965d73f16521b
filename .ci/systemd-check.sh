#!/usr/bin/env bash
# Check systemd/reminderd.service: `systemd-analyze verify` must pass and the offline
# security exposure must be at most $MAX_EXPOSURE (default 2.0). Works without systemd
# as PID 1 (containers, CI). Installs systemd from the distribution if it is missing.
#
# verify needs ExecStart's binary to exist, so a temporary copy of the unit points
# ExecStart at the venv's reminderd when there is one, else at /bin/true.
set -euo pipefail

MAX_EXPOSURE="${MAX_EXPOSURE:-2.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UNIT="${UNIT:-$ROOT/systemd/reminderd.service}"

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "systemd-analyze not found: installing systemd" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq systemd >/dev/null
fi

exe="/bin/true"
for candidate in "$ROOT/.venv/bin/reminderd" "$(command -v reminderd || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then exe="$candidate"; break; fi
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# the copy keeps the unit's name: security findings and messages name reminderd.service
sed "s#^ExecStart=/usr/local/bin/reminderd #ExecStart=$exe #" "$UNIT" >"$tmp/reminderd.service"

echo "== systemd-analyze verify (ExecStart -> $exe)"
verify_out="$(systemd-analyze verify "$tmp/reminderd.service" 2>&1)" || {
    echo "$verify_out"
    echo "FAIL: systemd-analyze verify" >&2
    exit 1
}
# verify prints warnings but exits 0 for some problems: treat output about our unit as failure
if grep -F "reminderd.service" <<<"$verify_out"; then
    echo "FAIL: systemd-analyze verify reported problems in reminderd.service" >&2
    exit 1
fi
echo "ok"

echo
echo "== systemd-analyze security --offline=yes"
security_out="$(systemd-analyze security --offline=yes --no-pager "$tmp/reminderd.service" 2>&1)" || true
echo "$security_out"
exposure="$(grep -oE 'Overall exposure level for [^:]+: [0-9]+\.[0-9]+' <<<"$security_out" | grep -oE '[0-9]+\.[0-9]+$' || true)"
if [ -z "$exposure" ]; then
    echo "FAIL: could not read the exposure level" >&2
    exit 1
fi
if awk -v e="$exposure" -v max="$MAX_EXPOSURE" 'BEGIN { exit !(e > max) }'; then
    echo "FAIL: exposure $exposure is above $MAX_EXPOSURE" >&2
    exit 1
fi
echo
echo "OK: verify passed, exposure $exposure <= $MAX_EXPOSURE"
