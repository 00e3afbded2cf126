"""A dedup run's row records where it runs (host, pid, the process's start). A new run closes the runs
left "running" by a process that is gone (killed, crashed) and drops what they staged; beside a run
still running it refuses. `crm-dedup runs` closes them by the same rule when it lists. On SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from crm import proposals, schema
from crm.store import Store
from pipelines import steps
from pipelines.cli import app

ROOT = Path(__file__).resolve().parents[1]
KILLED = "its process ended without finishing: killed or crashed"

# a dedup run's process: opens its run as new_run does, stages plans, says so, then works on (sleeps)
RUN_PROCESS = """
import sys, time
from crm import proposals
from crm.store import Store

store = Store(sys.argv[1], must_exist=True)
proposals.start_run(store, "r-child", ["contact"], sys.argv[2], exclusive=True)
proposals.stage_plans(store, "r-child", [("contact-1", {"x": 1}), ("contact-3", {"x": 3})])
print("staged", flush=True)
time.sleep(600)
"""


def _run(store: Store, run_id: str) -> dict:
    r = schema.dedup_runs
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.select(r).where(r.c.id == run_id)).one()._mapping)


def _plans(store: Store, run_id: str) -> int:
    p = schema.dedup_plans
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(p).where(p.c.run_id == run_id)).scalar_one()


def _running_elsewhere(store: Store, run_id: str, started_ago: dt.timedelta, **process) -> None:
    """Run ``run_id`` opened, with plans staged, its row saying it runs as ``process`` says."""
    proposals.start_run(store, run_id, ["contact"], "/tmp")
    proposals.stage_plans(store, run_id, [("contact-5", {"x": 5})])
    recorded = {**proposals.this_process(), **process}
    with store.engine.begin() as conn:
        conn.execute(schema.dedup_runs.update().where(schema.dedup_runs.c.id == run_id).values(
            summary={"process": recorded}, started_at=proposals.now() - started_ago))


def _gone_pid() -> int:
    """The pid of a process of this host that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_run_killed_with_sigkill_is_closed_by_the_next_run_and_its_staged_plans_dropped(store, tmp_path):
    child = subprocess.Popen([sys.executable, "-c", RUN_PROCESS, store.url, str(tmp_path)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "staged", child.stderr.read()
        recorded = _run(store, "r-child")["summary"]["process"]
        assert (recorded["host"], recorded["pid"]) == (socket.gethostname(), child.pid)
        # alive (another process of this host): a new run refuses, naming it
        with pytest.raises(proposals.RunStillRunning, match=rf"run r-child is still running .*pid {child.pid} "
                                                            r"on host .*its process is alive.*wait for it, or stop it"):
            steps.new_run(store.url, ["contact"], str(tmp_path / "runs"))
        assert _plans(store, "r-child") == 2 and not list((tmp_path / "runs").iterdir())
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert _run(store, "r-child")["status"] == "running"  # nothing in the database knows yet
    run_id, folder = steps.new_run(store.url, ["contact"], str(tmp_path / "runs"))
    killed = _run(store, "r-child")
    assert killed["status"] == "failed" and killed["finished_at"] is not None
    assert killed["summary"]["error"].startswith(KILLED) and f"pid {child.pid}" in killed["summary"]["error"]
    assert _plans(store, "r-child") == 0
    new = _run(store, run_id)
    assert new["status"] == "running" and new["summary"]["process"]["pid"] == os.getpid()
    assert Path(folder).is_dir()


def test_a_pid_taken_since_by_another_process_is_not_the_run_s(store, tmp_path):
    """The row names this host and a pid alive now, but a process started at another time: the run's
    own process is gone (its pid was reused), so the run is closed."""
    _running_elsewhere(store, "r-reused", dt.timedelta(minutes=5), pid=os.getpid(),
                       since_boot=proposals.this_process()["since_boot"] - 120)
    run_id, _ = steps.new_run(store.url, ["contact"], str(tmp_path / "runs"))
    assert _run(store, "r-reused")["status"] == "failed" and _plans(store, "r-reused") == 0
    assert _run(store, run_id)["status"] == "running"


def test_a_run_of_this_live_process_makes_a_new_run_refuse_and_changes_nothing(store, tmp_path):
    proposals.start_run(store, "r-live", ["contact"], "/tmp")
    proposals.stage_plans(store, "r-live", [("contact-1", {"x": 1})])
    started = proposals.this_process()["started"]
    with pytest.raises(proposals.RunStillRunning) as refused:
        steps.new_run(store.url, ["contact"], str(tmp_path / "runs"))
    message = str(refused.value)
    assert "run r-live is still running" in message and f"pid {os.getpid()} " in message
    assert f"process started {started}" in message and "wait for it, or stop it" in message
    runs, total = proposals.list_runs(store)
    assert total == 1 and runs[0]["status"] == "running" and _plans(store, "r-live") == 1
    assert not list((tmp_path / "runs").iterdir())  # the refused run's folder is not left behind
    proposals.finish_run(store, "r-live", "completed")
    steps.new_run(store.url, ["contact"], str(tmp_path / "runs"))  # once it finished


def test_a_run_whose_end_the_database_could_not_take_is_closed_by_the_next_run_of_its_process(store, tmp_path):
    """The database went away as the run ended (finish_run failed): its row says running and its
    process (this one) lives on, a notebook's or a test session's; the next run still opens."""
    run_id, _ = steps.new_run(store.url, ["contact"], str(tmp_path / "runs"))
    proposals.stage_plans(store, run_id, [("contact-1", {"x": 1})])
    gone = Store(f"sqlite:///{tmp_path}/gone/crm.db")  # (a database without the tables: every write fails)
    with pytest.raises(sa.exc.OperationalError):
        proposals.finish_run(gone, run_id, "failed", {"error": "the database went away"})
    gone.dispose()
    assert _run(store, run_id)["status"] == "running"
    again, _ = steps.new_run(store.url, ["contact"], str(tmp_path / "runs"))
    ended = _run(store, run_id)
    assert ended["status"] == "failed" and _plans(store, run_id) == 0
    assert ended["summary"]["error"].startswith("its process ended it (failed) but could not record that")
    assert _run(store, again)["status"] == "running"


def test_another_host_s_run_refuses_a_new_run_until_it_is_old_then_it_is_closed_as_abandoned(store, tmp_path):
    _running_elsewhere(store, "r-there", dt.timedelta(hours=23), host="other-host.example", pid=4242)
    with pytest.raises(proposals.RunStillRunning, match=r"run r-there .*pid 4242 on host other-host\.example.*"
                                                        r"cannot be checked from .*wait for it, or stop it"):
        steps.new_run(store.url, ["contact"], str(tmp_path / "runs"))
    assert _run(store, "r-there")["status"] == "running" and _plans(store, "r-there") == 1
    with store.engine.begin() as conn:
        conn.execute(schema.dedup_runs.update().where(schema.dedup_runs.c.id == "r-there").values(
            started_at=proposals.now() - dt.timedelta(hours=25)))
    run_id, _ = steps.new_run(store.url, ["contact"], str(tmp_path / "runs"))
    closed = _run(store, "r-there")
    assert closed["status"] == "failed" and closed["summary"]["error"].startswith("abandoned: not finished 24 hours")
    assert "other-host.example" in closed["summary"]["error"] and _plans(store, "r-there") == 0
    # come back after all, it stores nothing: a run closed is not brought back by its proposals
    row = {"id": "contact-5", "entity_type": "contact", "tier": "certain", "score": 0.99, "primary_id": 5,
           "member_ids": [5, 6], "responsible_ids": [], "primary_reason": "oldest", "criteria": "phone",
           "pairs": [], "plan": {"x": 5}}
    with pytest.raises(ValueError, match=r"run r-there is recorded as failed \(abandoned.*stores no proposals"):
        proposals.replace_pending(store, "r-there", ["contact"], [row])
    assert proposals.read_groups(store).empty and _run(store, run_id)["status"] == "running"


def test_a_run_whose_row_does_not_say_where_it_runs_counts_as_another_host_s(store, tmp_path):
    """Rows written before runs recorded their process: fresh, they may be running; old, abandoned."""
    for run_id, ago in (("r-old", dt.timedelta(hours=30)), ("r-recent", dt.timedelta(hours=2))):
        proposals.start_run(store, run_id, ["contact"], "/tmp")
        with store.engine.begin() as conn:
            conn.execute(schema.dedup_runs.update().where(schema.dedup_runs.c.id == run_id).values(
                summary=None, started_at=proposals.now() - ago))
    with pytest.raises(proposals.RunStillRunning, match=r"run r-recent .*where not recorded"):
        steps.new_run(store.url, ["contact"], str(tmp_path / "runs"))
    assert _run(store, "r-old")["status"] == "failed" and _run(store, "r-recent")["status"] == "running"


def test_the_runs_command_lists_a_dead_run_as_failed(store, tmp_path):
    """Listing closes a run whose process is gone by the rule a new run applies; a live one stays
    running, and another host's recent one too."""
    _running_elsewhere(store, "r-dead", dt.timedelta(minutes=10), pid=_gone_pid())
    _running_elsewhere(store, "r-far", dt.timedelta(minutes=20), host="other-host.example")
    proposals.start_run(store, "r-live", ["contact"], str(tmp_path))
    result = CliRunner().invoke(app, ["runs", "--db", store.url])
    assert result.exit_code == 0, result.output
    status = {line.split()[0]: line.split()[3] for line in result.output.splitlines() if line.startswith("r-")}
    assert status == {"r-dead": "failed", "r-far": "running", "r-live": "running"}, result.output
    dead = _run(store, "r-dead")
    assert dead["summary"]["error"].startswith(KILLED) and _plans(store, "r-dead") == 0
    assert _plans(store, "r-far") == 1


def test_two_runs_starting_at_once_one_refuses(store, tmp_path, monkeypatch):
    """Each looks for a running run and records its own in one locked transaction: both cannot find
    none (the look made slow here, so that without the lock both would)."""
    import time

    settle = proposals.settle_runs

    def slow_settle(conn):
        still = settle(conn)
        time.sleep(0.5)
        return still

    monkeypatch.setattr(proposals, "settle_runs", slow_settle)
    barrier, outcomes = threading.Barrier(2), []

    def start() -> None:
        barrier.wait()
        try:
            outcomes.append(steps.new_run(store.url, ["contact"], str(tmp_path / "runs"))[0])
        except proposals.RunStillRunning as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    started = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if isinstance(o, proposals.RunStillRunning)]
    assert len(started) == 1 and len(refused) == 1, outcomes
    assert f"run {started[0]} is still running" in str(refused[0])
    assert [r["id"] for r in proposals.list_runs(store)[0]] == started


def test_the_cli_refuses_a_second_run_in_one_line_and_closes_a_run_a_person_says_is_gone(store, tmp_path):
    """`crm-dedup run` while another machine's run is recorded running: one line naming it and the way
    to close it; `crm-dedup runs --close ID` closes it (failed, plans dropped); a run of a live process
    here is not closed by hand."""
    r = schema.dedup_runs
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"pipeline: {{runs_dir: {tmp_path / 'runs'}}}\n")
    with store.engine.begin() as conn:
        conn.execute(r.insert().values(id="elsewhere", started_at=proposals.now(), status="running",
                                       entity_types="contact", folder=None,
                                       summary={"process": {"host": "another-machine", "pid": 1, "since_boot": 1.0,
                                                            "started": "2026-12-07 00:00:00 UTC"}}))
    refused = CliRunner().invoke(app, ["run", "--db", store.url, "--settings", str(settings)])
    assert refused.exit_code == 1, refused.output
    assert "error: run elsewhere is still running" in refused.output and "Traceback" not in refused.output
    assert "`crm-dedup runs --close elsewhere` closes it" in refused.output
    closed = CliRunner().invoke(app, ["runs", "--db", store.url, "--close", "elsewhere"])
    assert closed.exit_code == 0 and "Run elsewhere: closed by " in closed.output, closed.output
    assert "elsewhere" in closed.output and " failed " in closed.output  # (then the listing)
    again = CliRunner().invoke(app, ["runs", "--db", store.url, "--close", "elsewhere"])
    assert again.exit_code == 1 and "there is no run 'elsewhere' running (it is failed)" in again.output
    proposals.start_run(store, "here", ["contact"], str(tmp_path))  # this live process
    mine = CliRunner().invoke(app, ["runs", "--db", store.url, "--close", "here"])
    assert mine.exit_code == 1 and "stop its process first" in mine.output, mine.output
