"""The dashboard's assets ship in the package (issue 16): a wheel and an sdist built from the
source hold every file the pages load, so an install with no internet access serves them."""

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from api.ui.html import ASSETS

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("recsys", "offline", "api", "eval", "loadtest", "cli")


def test_the_wheel_and_the_sdist_hold_every_asset(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    out = tmp_path / "dist"
    # PEP 517 hooks, offline, with the setuptools the dev extra installs (no isolation); one
    # process per hook, as a build frontend runs them
    for hook in ("build_wheel", "build_sdist"):
        code = f"import sys, setuptools.build_meta as b; b.{hook}(sys.argv[1])"
        subprocess.run(
            [sys.executable, "-c", code, str(out)],
            cwd=source,
            check=True,
            capture_output=True,
            timeout=120,
        )
    wheel = next(out.glob("*.whl"))
    sdist = next(out.glob("*.tar.gz"))
    expected = {f"api/ui/static/{name}" for name in ASSETS}
    with zipfile.ZipFile(wheel) as z:
        in_wheel = set(z.namelist())
        assert expected <= in_wheel, expected - in_wheel
        assert z.read("api/ui/static/ui.js") == (REPO / "api/ui/static/ui.js").read_bytes()
    with tarfile.open(sdist) as t:
        in_sdist = {"/".join(n.split("/")[1:]) for n in t.getnames()}
    assert expected <= in_sdist, expected - in_sdist
    # the license of the vendored chart library travels with it
    assert "api/ui/static/vendor/uplot/LICENSE" in in_wheel
