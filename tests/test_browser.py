"""The repository used as people use it: JupyterLab 4 and the rendered tutorial in a real browser.

Debian's Chromium (``/usr/bin/chromium``) is driven by Playwright for Python; nothing is downloaded (no
``playwright install``). The tests start ``jupyter lab`` on 127.0.0.1 with a token, a temporary runtime,
settings and workspace folder and the repository as its root, then

- open a paired ``.py`` and an ``.ipynb`` and check that no kernel dialog appears and the kernel starts;
- run all cells of notebook 00 at smoke size (a parameterised copy under ``runs/browser/``, so the
  repository is left as it was) and check that the kernel returns to idle with no error and with figures;
- open the built tutorial's index and one notebook page (file://) and check that they render with figures.

Screenshots go to ``runs/browser/`` (ignored by git). Without Chromium the tests are skipped; enable them
with ``apt-get install chromium`` (and ``pip install -e .[dev]`` for Playwright).
"""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "runs" / "browser"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NB = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook of the current tab
ENABLE = (
    "install Debian's browser with `apt-get install chromium` (and Playwright with `pip install -e .[dev]`)"
)

try:
    import playwright.sync_api as pw
except ImportError:  # pragma: no cover - the dev extra installs it
    pw = None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no /usr/bin/chromium: {ENABLE}"),
    pytest.mark.skipif(pw is None, reason=f"playwright is not installed: {ENABLE}"),
]

LAB_SETTINGS = {
    # open Jupytext's .py notebooks as notebooks (what "Open With > Jupytext Notebook" does)
    "@jupyterlab/docmanager-extension/plugin": {"defaultViewers": {"python": "Jupytext Notebook"}},
    # every cell in the page, so what the test reads is what a reader scrolls through
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    # no news or update toasts over the notebook (they would reach out to the network)
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}


def _git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def repo_status():
    """``git status --porcelain`` before the browser tests, to compare with afterwards."""
    return _git_status()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, studies_dir, repo_status):
    """A JupyterLab server on 127.0.0.1 serving the repository; yields its base URL and token."""
    base = tmp_path_factory.mktemp("lab")
    settings = base / "settings"
    for plugin, values in LAB_SETTINGS.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # kernels draw inline, as in Lab
    env.update(
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
        MIND_STUDIES_DIR=str(studies_dir),
    )
    port, token = _free_port(), secrets.token_hex(16)
    log = (base / "lab.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={ROOT}",
            "--ServerApp.allow_root=True",
            "--ServerApp.terminals_enabled=False",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"jupyter lab did not start: {(base / 'lab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"url": url, "token": token, "log": base / "lab.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A Chromium context with a fresh profile (Playwright driving /usr/bin/chromium)."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    with pw.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


def _sessions(lab) -> list[dict]:
    with urllib.request.urlopen(f"{lab['url']}/api/sessions?token={lab['token']}", timeout=5) as r:
        return json.loads(r.read())


def _wait_kernel_idle(lab, path: str, timeout: float = 120) -> dict:
    """Wait until the session of ``path`` has a kernel that is idle; return the session."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for s in _sessions(lab):
            if s.get("path") == path and (s.get("kernel") or {}).get("execution_state") == "idle":
                return s
        time.sleep(0.5)
    raise AssertionError(f"no idle kernel for {path} after {timeout} s; sessions: {_sessions(lab)}")


def _open(browser, lab, path: str):
    page = browser.new_page()
    # ?reset: start from an empty workspace, not the tabs an earlier page left open
    page.goto(f"{lab['url']}/lab/tree/{path}?reset&token={lab['token']}")
    page.locator(f"{NB} .jp-Notebook").first.wait_for(state="visible", timeout=90_000)
    return page


def _assert_no_dialog(page, what: str) -> None:
    dialogs = page.locator(".jp-Dialog")
    if dialogs.count():
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "dialog.png"))
        raise AssertionError(
            f"{what}: a dialog is open: {dialogs.first.inner_text()!r} (see runs/browser/dialog.png)"
        )


@pytest.mark.parametrize("path", ["notebooks/00_overview.ipynb", "notebooks/01_temporal_alignment.py"])
def test_lab_opens_notebook_without_kernel_dialog(lab, browser, path):
    page = _open(browser, lab, path)
    session = _wait_kernel_idle(lab, path)
    assert session["kernel"]["name"] == "python3"
    _assert_no_dialog(page, path)
    assert page.locator(f"{NB} .jp-Cell").count() > 3, f"{path} opened without its cells"
    tab = page.locator(".lm-TabBar-tab.lm-mod-current")
    assert "jp-mod-dirty" not in (tab.first.get_attribute("class") or ""), (
        f"{path} is marked modified on opening"
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"lab_open_{Path(path).name.replace('.', '_')}.png"))
    page.close()


@pytest.fixture(scope="module")
def smoke_copy(tmp_path_factory):
    """Notebook 00 with papermill-style injected parameters (smoke size, results in a temp folder)."""
    import jupytext
    from papermill.parameterize import parameterize_notebook

    results = tmp_path_factory.mktemp("browser-results")
    nb = jupytext.read(ROOT / "notebooks" / "00_overview.py")
    for cell in nb.cells:  # papermill reads every cell's tags (it adds them when it loads a file itself)
        cell.metadata.setdefault("tags", [])
    nb.metadata.setdefault("papermill", {})
    nb = parameterize_notebook(nb, {"size": "smoke", "results_dir": str(results), "fig_dir": ""})
    SHOTS.mkdir(parents=True, exist_ok=True)
    target = SHOTS / "00_overview_smoke.ipynb"
    for stale in SHOTS.glob("00_overview_smoke.*"):
        stale.unlink()
    jupytext.write(nb, target)
    return target


def test_lab_run_all_shows_figures_without_errors(lab, browser, smoke_copy):
    rel = smoke_copy.relative_to(ROOT).as_posix()
    page = _open(browser, lab, rel)
    _wait_kernel_idle(lab, rel)
    _assert_no_dialog(page, rel)
    n_code = page.locator(f"{NB} .jp-CodeCell").count()
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

    prompts = page.locator(f"{NB} .jp-CodeCell .jp-InputPrompt")
    deadline = time.monotonic() + 300
    while True:
        texts = prompts.all_inner_texts()
        done = sum(1 for t in texts if t.strip().strip("[]:").isdigit())
        if done == n_code and not any("*" in t for t in texts):
            break
        assert time.monotonic() < deadline, f"Run All did not finish in 300 s: prompts {texts}"
        time.sleep(1)
    _wait_kernel_idle(lab, rel)
    _assert_no_dialog(page, rel)

    outputs = page.locator(f"{NB} .jp-OutputArea-output")
    text = "\n".join(outputs.all_inner_texts())
    assert "Traceback" not in text and "Error" not in text.split("\n")[0], text[-2000:]
    images = page.locator(f"{NB} .jp-OutputArea-output img")
    assert images.count() >= 1, "Run All showed no figure"
    images.first.scroll_into_view_if_needed()
    widths = page.evaluate(
        "s => Array.from(document.querySelectorAll(s)).map(i => i.naturalWidth)",
        f"{NB} .jp-OutputArea-output img",
    )
    assert all(w > 100 for w in widths), f"figures did not load: widths {widths}"
    page.screenshot(path=str(SHOTS / "lab_run_all_00_overview.png"))

    page.keyboard.press("Control+s")  # the saved copy records what the kernel produced
    deadline = time.monotonic() + 30
    while True:
        nb = json.loads(smoke_copy.read_text())
        outs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
        if outs:
            break
        assert time.monotonic() < deadline, "saving the notebook from JupyterLab wrote no outputs"
        time.sleep(0.5)
    errors = [o for o in outs if o["output_type"] == "error"]
    assert not errors, f"cells raised: {[e['ename'] + ': ' + e['evalue'] for e in errors]}"
    assert sum(1 for o in outs if "image/png" in o.get("data", {})) >= 1
    assert any("study root" in "".join(o.get("text", "")) for o in outs)
    page.close()


def _open_file(browser, path: Path):
    page = browser.new_page()
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page


def test_built_docs_render(browser, smoke_docs):
    from mindlib import notebooks

    SHOTS.mkdir(parents=True, exist_ok=True)
    page = _open_file(browser, smoke_docs / "index.html")
    assert page.title().startswith("mind")
    body = page.locator("article").inner_text()
    assert "Tutorial" in body and "Method" in body and "API reference" in body
    nav = page.locator(".sidebar-tree a").all_inner_texts()
    assert any("Tutorial" in t for t in nav) and any("method" in t.lower() for t in nav), nav
    page.screenshot(path=str(SHOTS / "docs_index.png"))
    page.close()

    page = _open_file(browser, smoke_docs / "method.html")
    page.locator("mjx-container").first.wait_for(state="attached", timeout=30_000)  # MathJax typeset Eq. 1-4
    assert page.locator("mjx-container").count() >= 6
    page.locator("[id='5-sadgate']").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "docs_method.png"))
    page.close()

    first = notebooks.NOTEBOOKS[0].name
    page = _open_file(browser, smoke_docs / "tutorial" / f"{first}.html")
    assert "Overview" in page.locator("h1").first.inner_text()
    images = page.locator("article img")
    assert images.count() >= 1
    widths = page.evaluate(
        "() => Array.from(document.querySelectorAll('article img')).map(i => i.naturalWidth)"
    )
    assert widths and all(w > 100 for w in widths), f"figures on the notebook page did not load: {widths}"
    images.first.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / f"docs_{first}.png"))
    page.close()


def test_repository_left_clean(repo_status, lab):
    """Opening, running and saving in Lab changed nothing that git tracks or would add."""
    assert _git_status() == repo_status


def teardown_module(module):
    # the parameterised copy and the .py that Jupytext pairs with it on save are scratch files
    for path in SHOTS.glob("00_overview_smoke.*"):
        path.unlink()
    shutil.rmtree(SHOTS / ".ipynb_checkpoints", ignore_errors=True)
