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


def test_a_server_that_lost_its_port_starts_again_on_another(monkeypatch):
    import socket

    launched = iter([_Exits(3), _Exits(5)])  # another process took the port; then it fails for good
    monkeypatch.setattr(prefect_api._Server, "_launch", lambda self: next(launched))
    monkeypatch.setattr(prefect_api.atexit, "register", lambda func: None)
    server = prefect_api._Server()
    taken = socket.socket()
    taken.bind(("127.0.0.1", server.port))
    try:
        first = server.port
        with pytest.raises(RuntimeError, match=r"exited with code 5 while starting"):
            server.wait(timeout=30)
    finally:
        taken.close()
    assert server.relaunched == 1 and server.port != first and next(launched, None) is None


def test_a_server_whose_app_fails_to_start_is_reported_at_once(monkeypatch):
    """uvicorn exits with 3 too when the app cannot start (its port is free): no second try."""
    launched = iter([_Exits(3), _Exits(3)])
    monkeypatch.setattr(prefect_api._Server, "_launch", lambda self: next(launched))
    monkeypatch.setattr(prefect_api.atexit, "register", lambda func: None)
    server = prefect_api._Server()
    with pytest.raises(RuntimeError, match=r"exited with code 3 while starting"):
        server.wait(timeout=30)
    assert server.relaunched == 0


def test_ready_points_prefect_at_the_port_the_server_took_and_the_settings_come_back(monkeypatch):
    from prefect.context import refresh_global_settings_context
    from prefect.settings import get_current_settings

    class Moved:
        port = 41001

        @property
        def api_url(self):
            return f"http://127.0.0.1:{self.port}/api"

        def wait(self, timeout):
            self.port = 41002  # started again on another port

        process = _Exits(None)

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setattr(prefect_api, "_STARTED", None)
    monkeypatch.setattr(prefect_api, "_Server", Moved)
    refresh_global_settings_context()
    if get_current_settings().api.url:
        pytest.skip("a Prefect API is configured on this machine (profile or file)")
    with prefect_api.early_server() as ready:
        assert get_current_settings().api.url == "http://127.0.0.1:41001/api"
        ready()
        assert get_current_settings().api.url == os.environ["PREFECT_API_URL"] == "http://127.0.0.1:41002/api"
    assert "PREFECT_API_URL" not in os.environ and get_current_settings().api.url is None


def test_the_server_ends_with_a_command_killed_by_a_signal(tmp_path, bare_env):
    import signal
    import time

    script = ("import time\n"
              "from pipelines.prefect_api import early_server\n"
              "with early_server() as ready:\n"
              "    ready()\n"
              "    print('ready', flush=True)\n"
              "    time.sleep(120)\n")
    # the server's startup may wait as the CLI lets it (Prefect's own default, 20 s, was not enough
    # for a loaded machine: the test is about the signal)
    env = {**bare_env, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    command = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert command.stdout.readline().strip() == "ready"
        servers = _servers_of(tmp_path / "prefect")
        assert len(servers) == 1
        command.send_signal(signal.SIGTERM)
        command.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _servers_of(tmp_path / "prefect") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _servers_of(tmp_path / "prefect") == []
    finally:
        command.kill()
        command.wait()
        for pid in _servers_of(tmp_path / "prefect"):
            os.kill(pid, signal.SIGKILL)


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
