"""What the Docker image installs: a wheel built from exactly the Dockerfile's copy set.

The wheel is installed into a fresh virtualenv with no network: `--no-deps`, and the
dependencies made visible by a `.pth` line naming the project venv's site-packages. A
path line only extends sys.path; the `.pth` files in that folder (the editable install's
finder among them) are not run, so `solaris_hooks` can only come from the wheel.
"""

from __future__ import annotations

import json
import re
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import yaml

from tests.support.suite import repo_dir

dockerfile_path = repo_dir / "Dockerfile"
dockerfile_root = Path("/opt/solaris-hooks")

# Run by the fresh venv's Python, from an empty directory: prints one JSON object.
probe = """
import importlib, json, pkgutil, sys
from decimal import Decimal

import solaris_hooks

# Every module but the callback (importing it starts the proxy's work) imports without pgserver.
for module in pkgutil.walk_packages(solaris_hooks.__path__, "solaris_hooks."):
    if module.name != "solaris_hooks.callback":
        importlib.import_module(module.name)

from solaris_hooks import messages
from solaris_hooks.db.migrations import available_migrations
from solaris_hooks.mail import emails
from solaris_hooks.settings import Settings, describe_settings
from solaris_hooks.web.pages.render import render_page

alert = emails.Alert(
    id=1, user_id="a@b.co", kind="usage", threshold=Decimal("0.8"), credited_tokens=1000, used_tokens=800,
    tokens=None, attempts=1, email=None, name=None, locale=None,
)
subject, text, html = emails.render(alert, Settings())
page = render_page("settings.html", "pt-BR", described=describe_settings({}))
print(json.dumps({
    "module_file": solaris_hooks.__file__,
    "pgserver_imported": "pgserver" in sys.modules,
    "refusal_pt_br": messages.render(
        "quota_exhausted", credited_tokens=1000, used_tokens=1000, reserved_tokens=0, credits_email="c@x"
    ),
    "refusal_en": messages.render(
        "quota_exhausted", "en", credited_tokens=1000, used_tokens=1000, reserved_tokens=0, credits_email=""
    ),
    "email_subject": subject,
    "email_html": html,
    "page_status": page.status_code,
    "page_html": page.body.decode(),
    "migrations": len(available_migrations()),
}))
"""


def dockerfile_copies() -> list[tuple[str, Path]]:
    """(source in the repository, target inside the image) of every COPY of the Dockerfile."""
    copies = []
    for sources, target in re.findall(r"^COPY (.+) (\S+)$", dockerfile_path.read_text(encoding="utf-8"), re.M):
        for source in sources.split():
            assert not source.startswith("--"), f"COPY option {source}: the copy set is no longer plain paths"
            destination = Path(target) / source if target.endswith("/") else Path(target)
            copies.append((source, destination))
    return copies


def image_build_context(into: Path) -> Path:
    """The package source as the image has it before `pip install` (under /opt/solaris-hooks)."""
    for source, destination in dockerfile_copies():
        local = into / destination.relative_to(dockerfile_root)
        local.parent.mkdir(parents=True, exist_ok=True)
        if (repo_dir / source).is_dir():
            shutil.copytree(repo_dir / source, local, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(repo_dir / source, local)
    return into


def build_wheel(source: Path, into: Path) -> Path:
    """`pip wheel` of a source tree, without network or build isolation."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", str(into)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return next(into.glob("solaris_hooks-*.whl"))


def fresh_venv_with(wheel: Path, directory: Path) -> Path:
    """A new virtualenv holding only the wheel; its Python sees the project's dependencies."""
    venv.create(directory, with_pip=False)
    python = directory / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "project-dependencies.pth").write_text(
        "".join(f"{path}\n" for path in site.getsitepackages()), encoding="utf-8"
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return python


class TestWheel:
    def test_the_image_build_context_carries_every_template_and_migration(self, tmp_path):
        """A wheel built from exactly what the Dockerfile copies has every template and migration file."""
        names = zipfile.ZipFile(build_wheel(image_build_context(tmp_path / "opt"), tmp_path)).namelist()
        package = repo_dir / "solaris_hooks"
        for folder in ("templates", "db/migrations", "db/queries"):
            expected = sorted(
                f"solaris_hooks/{path.relative_to(package).as_posix()}"
                for path in (package / folder).rglob("*")
                if path.is_file() and "__pycache__" not in path.parts
            )
            assert expected, folder
            assert sorted(name for name in names if name.startswith(f"solaris_hooks/{folder}/")) == expected

    def test_the_wheel_installed_in_a_fresh_venv_renders_from_its_own_files(self, tmp_path):
        """Installed alone in a new venv, the package renders a refusal, an alert e-mail and an
        admin page, lists its migrations, and imports nowhere pgserver (the `embedded` extra)."""
        wheel = build_wheel(image_build_context(tmp_path / "opt"), tmp_path)
        python = fresh_venv_with(wheel, tmp_path / "venv")
        run_dir = tmp_path / "empty"
        run_dir.mkdir()
        result = subprocess.run(
            [python, "-c", probe],
            cwd=run_dir,
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "HOME": str(run_dir), "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        shown = json.loads(result.stdout.strip().splitlines()[-1])
        assert Path(shown["module_file"]).is_relative_to(tmp_path / "venv")
        assert not shown["pgserver_imported"]
        assert "acabou" in shown["refusal_pt_br"] and "c@x" in shown["refusal_pt_br"]
        assert "used up" in shown["refusal_en"]
        assert shown["email_subject"] == "IA SOLARIS: você já usou 80% da sua cota"
        assert "80%" in shown["email_html"]
        assert shown["page_status"] == 200
        # Setting names wrap after their underscores (<wbr>), never mid-word.
        page = shown["page_html"].replace("<wbr>", "")
        assert 'id="settings"' in page and "default_tokens_per_user" in page
        assert shown["migrations"] >= 1


class TestImage:
    def test_the_proxy_runs_as_a_user_of_its_own_not_root(self):
        """The Dockerfile's last USER is neither root nor uid 0, and the Dockerfile creates it."""
        text = dockerfile_path.read_text(encoding="utf-8")
        users = re.findall(r"^USER\s+(\S+)", text, re.M)
        assert users, "the Dockerfile sets no USER: the image would run as root"
        user = users[-1].split(":")[0]
        assert user not in ("root", "0")
        assert re.search(rf"(useradd|adduser)\b[^\n]*\b{re.escape(user)}\b", text), f"no RUN creates {user}"

    def test_the_user_owns_the_directory_of_the_spool_volume(self):
        """The spool volume compose mounts is under a directory the image creates for its user."""
        compose = yaml.safe_load((repo_dir / "docker-compose.yml").read_text(encoding="utf-8"))
        mounts = [volume.split(":") for volume in compose["services"]["litellm"]["volumes"]]
        spool = next(target for source, target, *_ in mounts if source == "solaris-spool")
        text = dockerfile_path.read_text(encoding="utf-8").replace("\\\n", " ")
        user = re.findall(r"^USER\s+(\S+)", text, re.M)[-1].split(":")[0]
        assert re.search(rf"mkdir -p [^\n]*{re.escape(spool)}\b", text), f"the image does not create {spool}"
        owned = re.findall(rf"chown -R {re.escape(user)}:\S+ ([^\n&]+)", text)
        assert any(spool.startswith(path) for paths in owned for path in paths.split()), owned
