"""Prefect's temporary API server, started as soon as a command knows that it will run a flow.

With no Prefect API configured, Prefect starts a temporary server at a process's first flow call: it
imports the server's code (~1.5-2.5 s), then starts the server in a subprocess and waits for it
(~4-5 s), and the command does nothing meanwhile. ``early_server`` starts the same server (the same
command, settings and database as Prefect's) first thing instead, so that it comes up while the
command imports pandas, the matchers and the flows; ``ready()`` then waits for what is left. Where a
Prefect API is configured (PREFECT_API_URL, a profile, a test harness), or temporary servers are
turned off, it does nothing and Prefect behaves as always.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

from pipelines.libc import end_with_parent, glibc

_STARTED: "_Server | None" = None  # one per process, as Prefect keeps one; stopped when the process ends


class _Server:
    """Prefect's temporary server (prefect.server.api.server.SubprocessASGIServer's command and
    environment) on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.process = self._launch()
        self.relaunched = 0
        atexit.register(self.stop)  # registered before Prefect's workers: they flush first at exit

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _launch(self) -> subprocess.Popen:
        import prefect
        from prefect.settings import get_current_settings

        # block types are not registered: nothing here uses Prefect blocks, and the registration's check
        # imports every installed Prefect collection (prefect-dask, and Dask with it: ~1 s of the start)
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
               "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false", "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false",
               **get_current_settings().to_environment_variables(exclude_unset=True)}
        env.pop("PREFECT_API_URL", None)
        return subprocess.Popen(
            [sys.executable, "-m", "pipelines.prefect_server", "--app-dir", str(prefect.__module_path__.parent), "--factory",
             "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "error", "--lifespan", "on"], env=env,
            # a session of its own: a Ctrl-C in the terminal goes to the command's process group, and a
            # server stopped by it first left the flow retrying a dead API for minutes; the command stops
            # it at exit, after the flow has reported how it ended (stop, registered with atexit)
            start_new_session=True,
            preexec_fn=functools.partial(end_with_parent, os.getpid()) if glibc() is not None else None)  # ends with
            # the command, even killed

    def wait(self, timeout: float) -> None:
        """Until the server answers its health check; a server that could not take its port (another
        process took it meanwhile: uvicorn exits with 3) starts again on another."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code == 3 and self.relaunched < 2 and not _port_free(self.port):
                self.relaunched += 1
                self.port = _free_port()
                self.process = self._launch()
            elif code is not None:
                raise RuntimeError(f"Prefect's temporary server (port {self.port}) exited with code {code} "
                                   "while starting; its messages are above")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Prefect's temporary server (port {self.port}) did not start within {timeout:.0f} s "
                           "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS)")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_free(port: int) -> bool:
    """Whether ``port`` can be bound: uvicorn exits with 3 both when another process took its port
    and when the app failed to start (then starting it again on another port would not help)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@contextlib.contextmanager
def early_server() -> Iterator[Callable[[], None]]:
    """Inside, the flows of this process use a temporary Prefect server started now, unless an API is
    configured. Yields ``ready``: call it after the imports, just before the first flow runs. On
    the way out the settings are as they were; the server stops when the process ends (Prefect's
    log and event workers send what they hold at exit). For a command's main thread: it sets the
    process's environment and Prefect's global settings."""
    global _STARTED
    from prefect.context import refresh_global_settings_context
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled:
        yield lambda: None
        return
    if _STARTED is None or _STARTED.process.poll() is not None:
        _STARTED = _Server()
    server, timeout = _STARTED, settings.server.ephemeral.startup_timeout_seconds
    os.environ["PREFECT_API_URL"] = server.api_url
    refresh_global_settings_context()  # Prefect read its settings when it was imported

    def ready() -> None:
        server.wait(timeout)
        if os.environ.get("PREFECT_API_URL") != server.api_url:  # started again on another port
            os.environ["PREFECT_API_URL"] = server.api_url
            refresh_global_settings_context()

    try:
        yield ready
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        refresh_global_settings_context()
