#!/usr/bin/env bash
# What is wrong with this deployment? Prints, under clear headings:
#   1. the containers and their state (docker compose ps),
#   2. the last log lines of every service,
#   3. `solaris doctor` run inside the litellm container: configuration, database,
#      migrations, ledger invariants, outbox and SMTP, one line each.
# Exits with the exit code of `solaris doctor` (0: healthy), or 2 when it could not run.
# Prints no secrets: neither .env nor `docker compose config` is shown.
#
#   scripts/troubleshoot.sh [--lines N]     (N log lines per service, default 50)
set -euo pipefail

lines=${TROUBLESHOOT_LINES:-50}
while [ $# -gt 0 ]; do
	case "$1" in
	--lines)
		[ $# -ge 2 ] || {
			echo "troubleshoot.sh: --lines needs a number" >&2
			exit 2
		}
		lines=$2
		shift
		;;
	-h | --help)
		sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "troubleshoot.sh: unknown option: $1 (see --help)" >&2
		exit 2
		;;
	esac
	shift
done
[[ $lines =~ ^[0-9]+$ ]] || {
	echo "troubleshoot.sh: --lines needs a number, got: $lines" >&2
	exit 2
}

cd "$(dirname "${BASH_SOURCE[0]}")/.."

heading() { printf '\n===== %s =====\n' "$*"; }

if ! command -v docker >/dev/null 2>&1 || ! docker compose version >/dev/null 2>&1; then
	echo "troubleshoot.sh: needs docker with the Compose v2 plugin ('docker compose'); see scripts/install.sh" >&2
	exit 2
fi
if [ ! -f .env ]; then
	echo "troubleshoot.sh: no .env here: the stack was never installed. Run scripts/install.sh" >&2
	exit 2
fi

heading "versions"
docker compose version || true
docker version --format 'Docker Engine {{.Server.Version}}' 2>/dev/null || echo "Docker daemon: not reachable"

heading "containers (docker compose ps)"
docker compose ps -a || true

# Services with a container, stopped ones included; else all the active profiles know.
services=$(docker compose ps -a --services 2>/dev/null || true)
if [ -z "$services" ]; then
	services=$(docker compose config --services 2>/dev/null || true)
fi
for service in $services; do
	heading "logs of $service (last $lines lines)"
	docker compose logs --no-color --timestamps --tail "$lines" "$service" 2>&1 || true
done

heading "solaris doctor (inside the litellm container)"
status=0
docker compose exec -T litellm solaris doctor || status=$?
if [ "$status" -ne 0 ]; then
	echo
	if [ -z "$(docker compose ps -q litellm 2>/dev/null || true)" ]; then
		echo "The litellm container is not running, so doctor could not run: see its logs above."
		echo "Start it with: docker compose up -d litellm"
		status=2
	else
		echo "solaris doctor exited with $status: the FAIL lines above say what to fix."
	fi
fi
exit "$status"
