"""What an installed wheel carries: templates and migrations, found without the source tree."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

repo = Path(__file__).resolve().parent.parent

probe = """
import solaris_hooks, solaris_hooks.messages as m, solaris_hooks.db.migrations as g
print(solaris_hooks.__file__)
print(m.render("quota_exhausted", credited_tokens=1000, used_tokens=1000, reserved_tokens=0, credits_email="c@x"))
print(m.render("quota_exhausted", "en", credited_tokens=1000, used_tokens=1000, reserved_tokens=0, credits_email=""))
print(len(g.available_migrations()))
import solaris_hooks.mail.emails as e, solaris_hooks.settings as s
alert = e.Alert(1, "a@b.co", "usage", 0.8, 1000, 800, None, 1, None, None, None)
print(e.render(alert, s.Settings())[0])
"""


def build_wheel(source: Path, into: Path) -> list[str]:
    """`pip wheel` of a source tree; the names of the files in the wheel."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", str(into)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return zipfile.ZipFile(next(into.glob("solaris_hooks-*.whl"))).namelist()


class TestWheel:
    def test_the_image_build_context_carries_the_templates(self, tmp_path):
        """A wheel built from exactly what the Dockerfile copies has every template."""
        context = tmp_path / "opt"
        for sources, target in re.findall(r"^COPY (.+) (\S+)$", (repo / "Dockerfile").read_text(), re.M):
            for source in sources.split():
                destination = (
                    context / Path(target).relative_to("/opt/solaris-hooks")
                    if not target.endswith("/")
                    else context / Path(target).relative_to("/opt/solaris-hooks") / source
                )
                destination.parent.mkdir(parents=True, exist_ok=True)
                if (repo / source).is_dir():
                    shutil.copytree(repo / source, destination, symlinks=True)
                else:
                    shutil.copy2(repo / source, destination)
        names = build_wheel(context, tmp_path)
        templates = [name for name in names if name.startswith("solaris_hooks/templates/")]
        repo_templates = [path for path in (repo / "solaris_hooks" / "templates").rglob("*") if path.is_file()]
        assert len(templates) == len(repo_templates) > 0

    def test_the_wheel_carries_templates_and_migrations_that_load_from_it(self, tmp_path):
        """Built and unpacked elsewhere, the package renders its messages and lists its migrations."""
        names = build_wheel(repo, tmp_path)
        wheel = next(tmp_path.glob("solaris_hooks-*.whl"))
        assert "solaris_hooks/templates/messages/pt-BR.yaml" in names
        assert "solaris_hooks/templates/messages/en.yaml" in names
        assert "solaris_hooks/templates/email/base.html" in names
        assert "solaris_hooks/templates/email/pt-BR/warning.html" in names
        assert "solaris_hooks/templates/email/en/credit.txt" in names
        assert any(name.startswith("solaris_hooks/db/migrations/0001_") for name in names)

        unpacked = tmp_path / "site"
        zipfile.ZipFile(wheel).extractall(unpacked)
        result = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={"PYTHONPATH": str(unpacked), "PATH": "/usr/bin:/bin"},
            timeout=60,
            check=True,
        )
        module_file, pt_br, english, migrations, subject = result.stdout.strip().splitlines()
        assert module_file.startswith(str(unpacked))
        assert "acabou" in pt_br and "c@x" in pt_br
        assert "used up" in english
        assert int(migrations) >= 1
        assert subject == "IA SOLARIS: você já usou 80% da sua cota"
