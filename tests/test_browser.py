"""Reports in a real browser: headless Chromium loads the index and a report, every figure
loads, no console error appears, and a completion containing <script> renders as text; a
successful report shows no stderr, opens with its summary above the fold at 1,400 x 900, keeps
its code behind a toggle and stays short."""

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

    def eval(self, expr, await_promise=False):
        return self.call("Runtime.evaluate", expression=expr, returnByValue=True,
                         awaitPromise=await_promise)["result"].get("value")

    def viewport(self, width, height):
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def close(self):
        self.ws.close()
        self.proc.kill()


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("browser_reports")
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
        # What a training run writes besides its figures: a warning per step, progress bars, a per-step table.
        nbformat.v4.new_code_cell(
            "import sys, warnings\nfrom tqdm.auto import tqdm\n"
            "for step in tqdm(range(150), desc='steps'):\n"
            "    warnings.warn(f'step {step}: deprecated', UserWarning)\n"
            "    print(f'step {step}', file=sys.stderr)\n"
            "display(report.table_file(pd.DataFrame({'step': range(150), 'loss': [1 / (s + 1) for s in range(150)]}),"
            " run_dir, 'steps'))"),
        # The summary is displayed last; the report shows it first.
        nbformat.v4.new_code_cell(
            "display(report.summary_row('Does GRPO teach it?', '52.2% base → 98.8% (paper)',"
            " report.pct_ci(0.56, 0.503, 0.615), verdict='not reproduced', figure=fig))"),
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
        assert browser.eval("document.querySelectorAll('a[href=\"browser_check/index.html\"]').length") == 1
        assert browser.eval("document.querySelectorAll('a[href=\"browser_check/run.log\"]').length") == 1
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


def _open_report(browser, reports):
    browser.viewport(1400, 900)
    browser.open((reports / "browser_check" / "index.html").as_uri())


def test_successful_report_shows_no_stderr_and_every_image_decodes(reports, tmp_path):
    browser = Browser(tmp_path)
    try:
        _open_report(browser, reports)
        assert browser.eval("document.querySelectorAll('[data-mime-type=\"application/vnd.jupyter.stderr\"]')"
                            ".length") == 0
        text = browser.eval("document.body.innerText")
        assert "deprecated" not in text and "it/s]" not in text and "steps: 100%" not in text
        assert "deprecated" in (reports / "browser_check" / "run.log").read_text()
        assert browser.eval("document.images.length") >= 2  # the figure, and the same one in the summary
        assert browser.eval("Promise.all(Array.from(document.images).map(i => i.decode().then(() => i.naturalWidth > 0,"
                            " () => false))).then(ok => ok.every(Boolean))", await_promise=True)
        assert browser.errors == []
    finally:
        browser.close()


def test_summary_row_is_above_the_fold_at_1400_by_900(reports, tmp_path):
    browser = Browser(tmp_path)
    try:
        _open_report(browser, reports)
        assert browser.eval("window.innerWidth") == 1400 and browser.eval("window.innerHeight") == 900
        box = browser.eval("(() => { const r = document.querySelector('[data-jrl-summary]').getBoundingClientRect();"
                           " return {top: r.top + scrollY, bottom: r.bottom + scrollY, height: r.height}; })()")
        assert box["height"] > 0 and box["bottom"] <= 900, box  # the whole block, its figure included
        assert "not reproduced" in browser.eval("document.querySelector('[data-jrl-summary]').innerText")
    finally:
        browser.close()


def test_code_is_hidden_until_the_toggle_shows_it(reports, tmp_path):
    browser = Browser(tmp_path)
    try:
        _open_report(browser, reports)
        visible_inputs = ("Array.from(document.querySelectorAll('.jp-CodeCell .jp-Cell-inputWrapper'))"
                          ".filter(e => e.offsetParent !== null).length")
        toggle = "document.querySelector('label[for=jrl-show-code]')"
        assert browser.eval(visible_inputs) == 0
        assert browser.eval(f"{toggle}.getBoundingClientRect().height") > 0  # the toggle itself is visible
        browser.eval(f"{toggle}.click()")
        assert browser.eval(visible_inputs) >= 3  # every code cell's input is in the page, not removed
        assert "report.summary_row" in browser.eval("document.body.innerText")
    finally:
        browser.close()


# The fixture's report holds one figure (~380 px tall at 1,400 px wide), its copy in the summary (<= 300 px), a
# 1-row completions table, the 10-row head of the per-step table (~300 px) and the bar on top: about 1,200 px
# (measured: 1,165 px). 3,000 px leaves room for a taller figure or a larger font, and fails as soon as a long
# output reaches the page: the 150 warnings and 150 stderr lines (450 lines at ~17 px: ~7,500 px) or the whole
# 150-row table (~27 px a row: ~4,000 px).
MAX_REPORT_HEIGHT_PX = 3000


def test_report_height_stays_below_the_bound(reports, tmp_path):
    browser = Browser(tmp_path)
    try:
        _open_report(browser, reports)
        height = browser.eval("document.documentElement.scrollHeight")
        assert height < MAX_REPORT_HEIGHT_PX, height
    finally:
        browser.close()
