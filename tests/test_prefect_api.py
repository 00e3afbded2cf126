"""pipelines.prefect_api: a command that runs a flow starts Prefect's temporary server first thing
(not at its first flow call), uses it, and leaves no server behind; with an API configured it
starts nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import prefect_api

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("crm-dedup"))


def _servers_of(prefect_home: Path) -> list[int]:
    """Pids of Prefect server processes started with this PREFECT_HOME."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"prefect.server.api.server:create_app" in cmdline and f"PREFECT_HOME={prefect_home}".encode() in environ:
            pids.append(int(proc.name))
    return pids


@pytest.fixture
def bare_env(tmp_path):
    """The environment of a new terminal: no Prefect API configured, a Prefect home of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def test_a_flow_command_uses_the_server_it_started_first_and_leaves_none_behind(tmp_path, bare_env):
    db = f"sqlite:///{tmp_path}/crm.db"
    subprocess.run([CLI, "demo", "--db", db, "--contacts", "60", "--companies", "20", "--leads", "20"], cwd=ROOT,
                   env=bare_env, check=True, capture_output=True, timeout=300)
    done = subprocess.run([CLI, "merge", "--db", db], cwd=ROOT, env=bare_env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Merge results: nothing approved" in done.stdout
    # Prefect announces the temporary server it starts itself at a flow call: it started none
    assert "Starting temporary server" not in done.stderr
    assert "Finished in state Completed" in done.stderr  # the flow ran, on the server started early
    assert _servers_of(tmp_path / "prefect") == []


def test_with_an_api_configured_nothing_starts(monkeypatch):
    from prefect.context import refresh_global_settings_context
    from prefect.settings import get_current_settings

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    monkeypatch.setattr(prefect_api, "_Server", lambda: pytest.fail("no server should start"))
    refresh_global_settings_context()
    try:
        with prefect_api.early_server() as ready:
            ready()
            assert get_current_settings().api.url == "http://127.0.0.1:9/api"
        assert os.environ["PREFECT_API_URL"] == "http://127.0.0.1:9/api"
    finally:
        monkeypatch.undo()
        refresh_global_settings_context()


class _Exits:
    """A server process that has already exited with ``code``."""

    def __init__(self, code: int):
        self.code = code

    def poll(self) -> int:
        return self.code


def test_a_server_that_fails_to_start_is_reported_and_one_that_lost_its_port_starts_again(monkeypatch):
    launched = iter([_Exits(3), _Exits(5)])  # the port was taken; then it fails for good
    monkeypatch.setattr(prefect_api._Server, "_launch", lambda self: next(launched))
    monkeypatch.setattr(prefect_api.atexit, "register", lambda func: None)
    server = prefect_api._Server()
    with pytest.raises(RuntimeError, match=r"exited with code 5 while starting"):
        server.wait(timeout=30)
    assert next(launched, None) is None  # started twice


def test_a_server_that_does_not_answer_in_time_is_stopped_and_reported(monkeypatch):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(prefect_api._Server, "_launch", lambda self: sleeper)
    monkeypatch.setattr(prefect_api.atexit, "register", lambda func: None)
    server = prefect_api._Server()
    try:
        with pytest.raises(RuntimeError, match=r"did not start within 1 s"):
            server.wait(timeout=1)
        assert sleeper.poll() is not None  # stopped, not left running
    finally:
        sleeper.kill()
        sleeper.wait()
