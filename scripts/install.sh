#!/usr/bin/env bash
# Install and start solaris-hooks with Docker Compose (docker-compose.yml at the repo root).
#
#   scripts/install.sh [--with-librechat] [--with-mail] [--with-tls DOMAIN] [--non-interactive]
#
# Creates .env from .env.example when it is missing, with a fresh random value for every
# secret, builds the proxy image, starts the services, waits until they are healthy and
# prints where everything is. Safe to run again: an existing .env is kept (only secrets it
# lacks are added), and profiles chosen earlier stay on (COMPOSE_PROFILES in .env).
# The master key is the only secret it prints; the others stay in .env.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: scripts/install.sh [options]

Starts the LiteLLM proxy with solaris_hooks and its Postgres, plus the chosen extras.

  --with-librechat    also LibreChat (http://127.0.0.1:3080), with MongoDB and Meilisearch
  --with-mail         also Mailpit, a mail catcher for the usage alerts (http://127.0.0.1:8025)
  --with-tls DOMAIN   also Caddy: HTTPS for DOMAIN (proxy) and chat.DOMAIN (LibreChat),
                      with Let's Encrypt certificates, or yours (see .env.example)
  --non-interactive   ask nothing (OPENAI_API_KEY is then read from the environment only)
  --timeout SECONDS   how long to wait for the services to be healthy (default 600)
  -h, --help          this help

Environment: OPENAI_API_KEY (saved in .env when .env has none yet).
EOF
}

say() { printf '==> %s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
die() {
	printf 'install.sh: %s\n' "$*" >&2
	exit 1
}

repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_dir"
env_file=.env
example_file=.env.example
known_profiles="librechat mail tls"

interactive=1
timeout_s=600
tls_domain=""
requested=()

while [ $# -gt 0 ]; do
	case "$1" in
	--with-librechat) requested+=(librechat) ;;
	--with-mail) requested+=(mail) ;;
	--with-tls)
		if [ $# -lt 2 ] || [ -z "$2" ] || [[ $2 == -* ]]; then
			die "--with-tls needs the public domain name, e.g. --with-tls ia.example.com"
		fi
		tls_domain=$2
		requested+=(tls)
		shift
		;;
	--with-tls=*)
		tls_domain=${1#--with-tls=}
		requested+=(tls)
		;;
	--non-interactive) interactive=0 ;;
	--timeout)
		[ $# -ge 2 ] || die "--timeout needs a number of seconds"
		timeout_s=$2
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	*) die "unknown option: $1 (see scripts/install.sh --help)" ;;
	esac
	shift
done

[[ $timeout_s =~ ^[0-9]+$ ]] || die "--timeout needs a number of seconds, got: $timeout_s"
if [ -n "$tls_domain" ] && ! [[ $tls_domain =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]]; then
	die "not a domain name: $tls_domain"
fi
# Without a terminal there is nobody to ask.
[ -t 0 ] || interactive=0

# ---- Docker ------------------------------------------------------------------------------
command -v docker >/dev/null 2>&1 ||
	die "docker is not installed. Install Docker Engine: https://docs.docker.com/engine/install/"
docker compose version >/dev/null 2>&1 ||
	die "'docker compose' (Compose v2) is missing. Install the docker-compose-plugin package: https://docs.docker.com/compose/install/linux/ (the old docker-compose v1 is not supported)"
docker info >/dev/null 2>&1 ||
	die "cannot reach the Docker daemon. Is it running (systemctl start docker)? May this user use it (sudo, or the docker group)?"

# ---- .env --------------------------------------------------------------------------------
# Value of KEY in .env, surrounding quotes removed; empty when absent.
env_get() {
	awk -v key="$1" -v sq="'" '
		index($0, key "=") == 1 { value = substr($0, length(key) + 2); found = 1 }
		END {
			if (!found) exit
			if (value ~ /^".*"$/ || value ~ ("^" sq ".*" sq "$")) value = substr(value, 2, length(value) - 2)
			print value
		}' "$env_file"
}

# Set KEY=VALUE in .env, replacing the KEY= line, else appended. The value goes through the
# environment, so awk does not interpret backslashes in it.
env_set() {
	local tmp
	tmp=$(mktemp "$env_file.XXXXXX")
	KEY=$1 VALUE=$2 awk '
		BEGIN { key = ENVIRON["KEY"]; line = key "=" ENVIRON["VALUE"] }
		index($0, key "=") == 1 { if (!done) print line; done = 1; next }
		{ print }
		END { if (!done) print line }' "$env_file" >"$tmp"
	chmod 600 "$tmp"
	mv "$tmp" "$env_file"
}

# N random bytes as 2N lowercase hex characters.
random_hex() {
	local out
	if command -v openssl >/dev/null 2>&1; then
		out=$(openssl rand -hex "$1")
	else
		out=$(od -An -v -N "$1" -tx1 /dev/urandom | tr -d ' \n')
	fi
	[ "${#out}" -eq $(($1 * 2)) ] || die "could not read random bytes (openssl rand, /dev/urandom)"
	printf '%s' "$out"
}

if [ -f "$env_file" ]; then
	say "keeping the existing .env"
else
	[ -f "$example_file" ] || die "$example_file is missing: run this from a complete copy of the repository"
	(
		umask 077
		cp "$example_file" "$env_file"
	)
	say "created .env from .env.example"
fi
chmod 600 "$env_file"

project=${COMPOSE_PROJECT_NAME:-$(env_get COMPOSE_PROJECT_NAME)}
project=${project:-solaris-hooks}

# Fill in a secret that .env lacks; a value already there is never changed.
generated=0
ensure_secret() { # KEY BYTES [PREFIX]
	local value
	if [ -z "$(env_get "$1")" ]; then
		if [ "$1" = POSTGRES_PASSWORD ] && docker volume inspect "${project}_pgdata" >/dev/null 2>&1; then
			warn "the volume ${project}_pgdata already holds a database with another password;" \
				"put its POSTGRES_PASSWORD in .env, or remove the volume (docker volume rm ${project}_pgdata) to start empty"
		fi
		value=$(random_hex "$2") # an assignment, so that a failure stops the script
		env_set "$1" "${3:-}$value"
		generated=$((generated + 1))
	fi
}
ensure_secret POSTGRES_PASSWORD 24
ensure_secret LITELLM_MASTER_KEY 32 sk-
ensure_secret LIBRECHAT_API_KEY 32 sk-
ensure_secret LITELLM_SALT_KEY 32 sk-
ensure_secret SOLARIS_SECRET_KEY 32
ensure_secret CREDS_KEY 32
ensure_secret CREDS_IV 16
ensure_secret JWT_SECRET 32
ensure_secret JWT_REFRESH_SECRET 32
ensure_secret MEILI_MASTER_KEY 32
if [ "$generated" -gt 0 ]; then
	say "generated $generated secret(s) in .env"
fi

# Secrets written by hand must still have the shape their users expect.
[[ $(env_get LITELLM_MASTER_KEY) == sk-* ]] || die "LITELLM_MASTER_KEY in .env must start with sk-"
# LiteLLM takes a virtual key of sk- and at least 16 characters; it goes into JSON below.
[[ $(env_get LIBRECHAT_API_KEY) =~ ^sk-[A-Za-z0-9._~-]{13,}$ ]] ||
	die "LIBRECHAT_API_KEY in .env must start with sk-, be at least 16 characters long and hold only letters, digits and . _ ~ -"
[ "$(env_get LIBRECHAT_API_KEY)" != "$(env_get LITELLM_MASTER_KEY)" ] ||
	die "LIBRECHAT_API_KEY in .env must not be the master key: give LibreChat a key of its own"
[[ $(env_get CREDS_KEY) =~ ^[0-9a-fA-F]{64}$ ]] || die "CREDS_KEY in .env must be 64 hex characters (32 bytes)"
[[ $(env_get CREDS_IV) =~ ^[0-9a-fA-F]{32}$ ]] || die "CREDS_IV in .env must be 32 hex characters (16 bytes)"
[[ $(env_get POSTGRES_PASSWORD) =~ ^[A-Za-z0-9._~-]+$ ]] ||
	die "POSTGRES_PASSWORD in .env may hold only letters, digits and . _ ~ - (it goes into a URL)"

# OpenAI: from the environment, else asked for; skipping is fine (solaris-demo needs no key).
if [ -z "$(env_get OPENAI_API_KEY)" ]; then
	openai_key=${OPENAI_API_KEY:-}
	if [ -z "$openai_key" ] && [ "$interactive" -eq 1 ]; then
		printf 'OpenAI API key for gpt-4o-mini and gpt-4o (Enter to skip: the solaris-demo model needs none): '
		IFS= read -r -s openai_key || openai_key=""
		printf '\n'
	fi
	if [ -n "$openai_key" ]; then
		[[ $openai_key =~ ^[A-Za-z0-9_.:-]+$ ]] || die "that does not look like an API key (unexpected characters)"
		env_set OPENAI_API_KEY "$openai_key"
		say "OPENAI_API_KEY saved in .env"
	else
		say "no OPENAI_API_KEY: only the solaris-demo model will answer (add the key to .env later)"
	fi
fi

# ---- Profiles ----------------------------------------------------------------------------
profiles=()
has_profile() {
	local profile
	for profile in ${profiles[@]+"${profiles[@]}"}; do
		[ "$profile" = "$1" ] && return 0
	done
	return 1
}
IFS=',' read -r -a saved_profiles <<<"$(env_get COMPOSE_PROFILES | tr -d ' ')"
for profile in ${saved_profiles[@]+"${saved_profiles[@]}"} ${requested[@]+"${requested[@]}"}; do
	[ -n "$profile" ] || continue
	case " $known_profiles " in
	*" $profile "*) has_profile "$profile" || profiles+=("$profile") ;;
	*) die "unknown profile in COMPOSE_PROFILES: $profile (known: $known_profiles)" ;;
	esac
done
joined_profiles=$(IFS=, && echo "${profiles[*]-}")
if [ "$joined_profiles" != "$(env_get COMPOSE_PROFILES)" ]; then
	env_set COMPOSE_PROFILES "$joined_profiles"
fi

if has_profile mail; then
	smtp_host=$(env_get SMTP_HOST)
	if [ -z "$smtp_host" ]; then
		env_set SMTP_HOST mailpit
		env_set SMTP_PORT 1025
		env_set SMTP_SECURITY none
		say "alert e-mails go to Mailpit (SMTP_HOST=mailpit in .env)"
	elif [ "$smtp_host" != mailpit ]; then
		warn "SMTP_HOST is $smtp_host in .env: alerts go there, not to Mailpit"
	fi
fi

if [ -n "$tls_domain" ]; then
	env_set DOMAIN "$tls_domain"
fi
domain=$(env_get DOMAIN)
if has_profile tls; then
	[ -n "$domain" ] || die "the tls profile needs DOMAIN: run with --with-tls your.domain.example"
	if has_profile librechat && [ -z "$(env_get LIBRECHAT_URL)" ]; then
		env_set LIBRECHAT_URL "https://chat.$domain"
	fi
	if [ -z "$(env_get TLS_CERTS_DIR)" ]; then
		mkdir -p deploy/certs
	fi
fi

# ---- Start -------------------------------------------------------------------------------
profile_args=()
for profile in ${profiles[@]+"${profiles[@]}"}; do
	profile_args+=(--profile "$profile")
done
compose() { docker compose ${profile_args[@]+"${profile_args[@]}"} "$@"; }

say "building and starting (profiles: ${joined_profiles:-none}); the first build takes a few minutes"
# `up` itself waits for the dependencies' health checks, so a proxy that never gets healthy
# already fails here.
compose up -d --build || die "docker compose up failed (messages above). See scripts/troubleshoot.sh"

services=()
while IFS= read -r service; do
	[ -n "$service" ] && services+=("$service")
done < <(compose config --services)
[ "${#services[@]}" -gt 0 ] || die "docker compose lists no services"

# ---- Wait for health ---------------------------------------------------------------------
say "waiting for ${services[*]} to be healthy (up to ${timeout_s}s)"
deadline=$((SECONDS + timeout_s))
next_report=$((SECONDS + 15))
while :; do
	waiting=()
	failed=()
	for service in "${services[@]}"; do
		container=$(compose ps -a -q "$service" 2>/dev/null | head -n 1)
		if [ -z "$container" ]; then
			waiting+=("$service(no container)")
			continue
		fi
		state=$(docker inspect --format '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$container" 2>/dev/null || echo "unknown unknown")
		case "$state" in
		"running healthy" | "running none") ;;
		exited* | dead*) failed+=("$service(${state%% *})") ;;
		*) waiting+=("$service(${state// //})") ;;
		esac
	done
	if [ "${#failed[@]}" -gt 0 ]; then
		die "stopped: ${failed[*]}. See: docker compose logs ${failed[0]%%(*}, or scripts/troubleshoot.sh"
	fi
	[ "${#waiting[@]}" -eq 0 ] && break
	if [ "$SECONDS" -ge "$deadline" ]; then
		die "not healthy after ${timeout_s}s: ${waiting[*]}. See scripts/troubleshoot.sh"
	fi
	if [ "$SECONDS" -ge "$next_report" ]; then
		say "still waiting for: ${waiting[*]}"
		next_report=$((SECONDS + 15))
	fi
	sleep 3
done

# ---- Where things are --------------------------------------------------------------------
bind=$(env_get BIND_ADDRESS)
bind=${bind:-127.0.0.1}
case "$bind" in
0.0.0.0 | "::" | "[::]") host=localhost ;;
*:*) host="[$bind]" ;;
*) host=$bind ;;
esac
proxy_url="http://$host:4000"
master_key=$(env_get LITELLM_MASTER_KEY)

admin_state="not checked: curl is not installed"
if command -v curl >/dev/null 2>&1; then
	# The key goes to curl on stdin, not on its command line (visible to other users).
	if printf 'header = "Authorization: Bearer %s"\n' "$master_key" |
		curl -fsS --max-time 10 -K - "$proxy_url/solaris/health" >/dev/null 2>&1; then
		admin_state="ok"
	else
		admin_state="not answering yet: see scripts/troubleshoot.sh"
	fi
fi

# HTTP status of a request to the proxy, 000 when it does not answer. The curl config
# (headers, body) comes on stdin: keys on a command line can be read by other users.
proxy_status() { # PATH
	curl -sS --max-time 30 -o /dev/null -w '%{http_code}' -K - "$proxy_url$1" 2>/dev/null || true
}

# LibreChat calls with its own key (trusted_keys in litellm-config.yaml), which LiteLLM must
# hold as a virtual key: the master key registers it once; a key that already works is left
# alone. Only with the librechat profile: a trusted key that nothing uses is a needless risk.
librechat_state=""
if has_profile librechat; then
	librechat_key=$(env_get LIBRECHAT_API_KEY)
	if ! command -v curl >/dev/null 2>&1; then
		librechat_state="NOT registered: curl is not installed (LibreChat's calls fail until it is)"
	elif [ "$(printf 'header = "Authorization: Bearer %s"\n' "$librechat_key" | proxy_status /v1/models)" = 200 ]; then
		librechat_state="known to LiteLLM (it answers)"
	else
		status=$(
			{
				printf 'header = "Authorization: Bearer %s"\n' "$master_key"
				printf 'header = "Content-Type: application/json"\n'
				printf 'data = "{\\"key\\": \\"%s\\", \\"key_alias\\": \\"librechat\\", \\"key_type\\": \\"llm_api\\"}"\n' "$librechat_key"
			} | proxy_status /key/generate
		) || true # a curl quitting before it reads stdin breaks the pipe; what it printed stands
		if [ "$status" = 200 ]; then
			librechat_state="registered in LiteLLM (alias librechat)"
		else
			librechat_state="NOT registered (HTTP $status): LibreChat's calls fail until it is; run scripts/install.sh again, or see the README (LibreChat)"
		fi
	fi
fi

printf '\nsolaris-hooks is running.\n\n'
printf '  LiteLLM proxy (OpenAI API)   %s/v1\n' "$proxy_url"
printf '  admin API health             %s/solaris/health   -> %s\n' "$proxy_url" "$admin_state"
if has_profile tls; then
	printf '  over HTTPS                   https://%s/v1\n' "$domain"
fi
if has_profile librechat; then
	if has_profile tls; then
		printf '  LibreChat                    https://chat.%s\n' "$domain"
	else
		printf '  LibreChat                    http://%s:3080\n' "$host"
	fi
	printf '                               (the first account you register is its admin)\n'
	printf '  LibreChat key                %s\n' "$librechat_state"
fi
if has_profile mail; then
	printf '  mail catcher (Mailpit)       http://%s:8025\n' "$host"
fi
printf '  master key                   %s\n\n' "$master_key"
printf 'Send it as "Authorization: Bearer <master key>" and name the user in the\n'
printf 'x-litellm-end-user-id header. The other secrets are in .env: keep it private.\n'
printf 'Diagnose problems with scripts/troubleshoot.sh.\n'
