"""filterscope as a library: the wheel (not an editable install) in a fresh virtual environment serves the page,
its templates and data sets, and `import filterscope` leaves a person's own `app` package alone."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import sysconfig
import urllib.request
import venv
from pathlib import Path

from tests.conftest import wait_healthy

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_serves_the_page_and_leaves_a_persons_app_package_alone(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", str(ROOT), "-w", str(wheels)], check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("filterscope-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # The dependencies (torch and the rest) are taken from this environment rather than installed again; its
    # editable filterscope is not: a path listed in a .pth file has its own .pth files (the editable finder) unread.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", "--disable-pip-version-check", str(wheel)], check=True)

    project = tmp_path / "project"  # a person's own project, with its own `app` package
    (project / "app").mkdir(parents=True)
    (project / "app" / "__init__.py").write_text("MINE = True\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILTERSCOPE_")}
    env["FILTERSCOPE_DATA_DIR"] = str(tmp_path / "data")
    imported = subprocess.run([python, "-c", "import filterscope, filterscope.main, app; "
                               "print(filterscope.__file__); print(app.MINE)"],
                              cwd=project, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert imported[0].startswith(str(site)) and imported[1] == "True"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([env_dir / "bin" / "filterscope", "serve", "--port", str(port), "--log-level",
                               "warning"], cwd=project, env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process=server)
        page = urllib.request.urlopen(f"{base}/", timeout=10).read().decode()
        assert "filterscope" in page and "/static/js/main.js" in page
        script = urllib.request.urlopen(f"{base}/static/js/main.js", timeout=10).read().decode()
        assert "import" in script
        datasets = urllib.request.urlopen(f"{base}/api/datasets", timeout=10).read().decode()
        assert "mnist" in datasets and "fashion-mnist" in datasets
        digit = urllib.request.urlopen(f"{base}/api/datasets/mnist/test/0.png", timeout=10).read()
        assert digit.startswith(b"\x89PNG")  # the data set's own images, read from inside the package
        runs = json.loads(urllib.request.urlopen(f"{base}/api/runs", timeout=10).read())
        assert [(r["config"]["model"], r["config"]["dataset"], r["status"]) for r in runs] == [
            ("tiny", "fashion-mnist", "finished")]  # the pretrained start, shipped inside the wheel
    finally:
        server.terminate()
        server.wait(timeout=30)
