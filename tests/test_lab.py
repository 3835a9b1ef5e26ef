"""`jrl lab`: JupyterLab on notebooks/ with this environment; it starts, answers its API, and stops."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from jrl_core.cli import lab_command
from jrl_core.study import NOTEBOOKS_DIR, REPO_ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_lab_command_is_this_environments_jupyterlab_on_notebooks():
    cmd = lab_command(port=9999, no_browser=True)
    assert cmd[:4] == [sys.executable, "-m", "jupyter", "lab"]
    assert f"--notebook-dir={NOTEBOOKS_DIR}" in cmd
    assert f"--MappingKernelManager.root_dir={REPO_ROOT}" in cmd  # kernels start in the repo root, as in a study
    assert "--port=9999" in cmd and "--no-browser" in cmd
    assert "--no-browser" not in lab_command()
    assert lab_command(options=["--allow-root"])[-1] == "--allow-root"


def test_jrl_lab_passes_options_after_the_separator():
    from jrl_core.cli import build_parser

    args = build_parser().parse_args(["lab", "--port", "8890", "--", "--allow-root", "--ServerApp.ip=0.0.0.0"])
    assert args.port == 8890 and args.options == ["--allow-root", "--ServerApp.ip=0.0.0.0"]


class Lab:
    """A `jrl lab` server in a subprocess on a free port, with a token; its REST API through urllib."""

    def __init__(self, tmp_path):
        self.port, self.token, self.log_path = _free_port(), secrets.token_hex(16), tmp_path / "lab.log"
        env = {**os.environ, "JUPYTER_TOKEN": self.token, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
               "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws"),
               "OMP_NUM_THREADS": "1"}
        as_root = ["--", "--allow-root"] if os.geteuid() == 0 else []  # containers and CI run as root
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jrl_core.cli", "lab", "--port", str(self.port), "--no-browser", *as_root],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def request(self, path: str, method: str = "GET", body: dict | None = None, raw: bool = False):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, (r.read() if raw else json.load(r))

    def wait_until_up(self, seconds: float = 45):
        deadline = time.monotonic() + seconds
        while True:
            assert self.proc.poll() is None, f"jrl lab exited with {self.proc.returncode}: {self.log_path.read_text()}"
            try:
                return self.request("/api/status")
            except (urllib.error.URLError, ConnectionError, OSError):
                assert time.monotonic() < deadline, f"no answer in {seconds} s: {self.log_path.read_text()}"
                time.sleep(0.3)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)  # the server shuts its kernels down on SIGTERM
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


def _is_kernel_of(pid: int, parent: int) -> bool:
    """Whether process ``pid`` is an IPython kernel started by process ``parent`` (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return ppid == parent and b"ipykernel" in f.read()
    except (OSError, ValueError, IndexError):
        return False


def test_jrl_lab_starts_a_server_that_answers_its_api_then_stops(tmp_path):
    pytest.importorskip("jupyterlab", reason="JupyterLab is not installed in this environment (pip install -e .)")
    t0 = time.monotonic()
    server = Lab(tmp_path)
    try:
        status, body = server.wait_until_up()
        assert status == 200 and "started" in body
        _, listing = server.request("/api/contents")  # the server's root is notebooks/
        assert "rq1_jigsaw.ipynb" in {item["name"] for item in listing["content"]}
    finally:
        server.stop()
    assert server.proc.returncode is not None
    assert time.monotonic() - t0 < 50


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads the kernel's working directory from /proc")
def test_jrl_lab_kernels_start_in_the_repo_root_like_a_study_run(tmp_path):
    pytest.importorskip("jupyterlab", reason="JupyterLab is not installed in this environment (pip install -e .)")
    server = Lab(tmp_path)
    try:
        server.wait_until_up()
        _, session = server.request("/api/sessions", "POST", {"path": "rq1_jigsaw.ipynb", "type": "notebook",
                                                              "kernel": {"name": "python3"}})
        kernels, deadline = [], time.monotonic() + 30
        while not kernels and time.monotonic() < deadline:
            kernels = [p for p in os.listdir("/proc") if p.isdigit() and _is_kernel_of(int(p), server.proc.pid)]
            time.sleep(0.2)
        assert kernels, "no kernel process appeared"
        # so a notebook's default run_dir ("runs/rq1_interactive") lands in the repo's runs/, as in a study
        assert os.readlink(f"/proc/{kernels[0]}/cwd") == str(REPO_ROOT)
        server.request(f"/api/sessions/{session['id']}", "DELETE", raw=True)  # shuts the kernel down
    finally:
        server.stop()
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _is_kernel_of(int(p), server.proc.pid)]
