"""Reports in a real browser: headless Chromium loads the index and a report, every figure
loads, no console error appears, and a completion containing <script> renders as text."""

import json
import shutil
import socket
import subprocess
import time
import urllib.request

import nbformat
import pytest

from jrl_core import study

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install chromium); "
                                                            ".ci/run installs it")

EVIL = "<script>window.__pwned = 1</script>"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """Just enough of the Chrome DevTools Protocol: navigate, evaluate, collect console errors."""

    def __init__(self, tmp_path):
        import websocket

        port = _free_port()
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", f"--remote-debugging-port={port}",
             "--remote-allow-origins=*", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while True:
            try:
                tabs = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
                page = next(t for t in tabs if t["type"] == "page")
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        self.n = 0
        self.errors = []
        for method in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.call(method)

    def call(self, method, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            self._event(msg)
            if msg.get("id") == self.n:
                return msg.get("result", {})

    def _event(self, msg):
        m, p = msg.get("method"), msg.get("params", {})
        if m == "Runtime.exceptionThrown":
            self.errors.append(p["exceptionDetails"].get("text"))
        elif m == "Runtime.consoleAPICalled" and p.get("type") == "error":
            self.errors.append(str(p.get("args")))
        elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
            self.errors.append(p["entry"]["text"])

    def open(self, url):
        self.call("Page.navigate", url=url)
        deadline = time.time() + 30
        while self.eval("location.href") != url or self.eval("document.readyState") != "complete":
            if time.time() > deadline:
                raise TimeoutError(url)
            time.sleep(0.1)
        time.sleep(0.5)
        self.eval("1")  # drain events

    def eval(self, expr):
        return self.call("Runtime.evaluate", expression=expr, returnByValue=True)["result"].get("value")

    def close(self):
        self.ws.close()
        self.proc.kill()


@pytest.fixture
def reports(tmp_path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("run_dir = None")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        nbformat.v4.new_code_cell(
            "import json, pandas as pd\nfrom pathlib import Path\nfrom jrl_core import plots, report\n"
            "fig = plots.accuracy_before_after([dict(label='base', accuracy=.5, ci_low=.45, ci_high=.55)],"
            " random=.5, paper=[dict(label='paper', accuracy=.9)])\n"
            f"display(report.completions_html(pd.DataFrame({{'completion': [{EVIL!r}], 'score': [0.0]}})))\n"
            f"json.dump({{'acc': 0.5, 'note': {EVIL!r}}}, open(Path(run_dir) / 'metrics.json', 'w'))"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "fig.ipynb"
    nbformat.write(nb, path)
    out = tmp_path / "reports"
    [res] = study.run_study([study.RunSpec(notebook=str(path), name="browser_check", parameters={})],
                            reports_dir=out, progress=False)
    assert res.ok, res.error
    return out


def test_index_and_report_load_in_chromium_without_errors(reports, tmp_path):
    browser = Browser(tmp_path)
    try:
        browser.open((reports / "index.html").as_uri())
        assert browser.eval("document.querySelectorAll('a[href*=browser_check]').length") == 1
        assert browser.eval("window.__pwned === undefined")
        browser.open((reports / "browser_check" / "index.html").as_uri())
        n_img = browser.eval("document.images.length")
        assert n_img >= 1
        assert browser.eval("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        assert browser.eval("window.__pwned === undefined"), "a completion's <script> ran"
        assert "window.__pwned" in browser.eval("document.body.innerText"), "the completion must show as text"
        assert browser.errors == []
    finally:
        browser.close()
