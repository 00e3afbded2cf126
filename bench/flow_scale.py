"""The whole dedup flow over contacts stored in the database, Prefect included, then an incremental
run after 1% of the records changed. Whole-process wall time and memory of each run, and the flow's
own seconds per stage, appended to bench/results/flow_scale.json. Memory is two figures (see
bench/common.py): `peak_rss_mb`, the exact peak RSS of the largest single process, and `peak_tree_mb`,
the sampled peak of the summed PSS of the flow process and the helpers it forks (planning,
normalising, reading) while they run together. With a temporary Prefect server per run, that server (a
uvicorn process started in the flow's session) is part of the tree; with `--prefect-server` it is not.

    python -m bench.flow_scale --sizes 10000,100000 --backends sqlite,postgresql
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import sys
import tempfile
import uuid
from pathlib import Path

import sqlalchemy as sa
import yaml

from bench.common import append_result, machine_info, now_iso, python_child, run_child, versions
from bench.load_store import generate, write_store

WORK = Path(__file__).with_name("work")
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def child_run(url: str, settings_path: str, out: str, incremental: bool) -> None:
    """In the measured process: run the flow and write its summary for the contacts to ``out``."""
    import os

    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from pipelines.flows import dedup_flow

    summary = dedup_flow(db=url, entity_types=["contact"], settings_path=settings_path, incremental=incremental)
    result = {**summary["entities"]["contact"], "flow_seconds": summary["flow_seconds"], "flow_s": summary["seconds"]}
    Path(out).write_text(json.dumps(result, default=str))


def change_one_percent(url: str) -> int:
    from crm import schema
    from crm.store import Store

    store = Store(url)
    c = schema.contacts
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=2)
    with store.engine.begin() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(c)).scalar_one()
        step = 100
        changed = conn.execute(c.update().where(c.c.id % step == 7).values(
            first_name=sa.func.upper(c.c.first_name), modified_at=now)).rowcount
    store.dispose()
    return changed


def _summary(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _flow_times(summary: dict) -> dict:
    """The find's stages, the flow's steps and the flow's own seconds (the rest of the process's wall
    time is Python start, imports and Prefect's temporary server)."""
    return {"stages": summary.get("timings", {}), "flow_steps": summary.get("flow_seconds", {}),
            "flow_s": summary.get("flow_s")}


@contextlib.contextmanager
def prefect_server():
    """A Prefect server of its own for the measured runs, as a scheduled deployment has one: without
    it each run starts a temporary server (5-7 s of its wall time). Yields the environment pointing at it."""
    import socket
    import subprocess
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tempfile.mkdtemp(prefix="prefect_home_", dir=WORK)
    env = {**os.environ, "PREFECT_HOME": home, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the Prefect server for the benchmark did not start (exit code {proc.poll()})")
                time.sleep(0.5)
        yield {"PREFECT_API_URL": url, "PREFECT_HOME": home}
    finally:
        try:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
        finally:
            shutil.rmtree(home, ignore_errors=True)


def bench_one(backend: str, n: int, timeout: float, incremental: bool = True, server: dict | None = None) -> dict:
    from crm.store import Store

    WORK.mkdir(exist_ok=True)
    schema_name = None
    if backend == "sqlite":
        path = WORK / f"flow_{n}.db"
        path.unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        schema_name = f"bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema_name}"'))
        admin.dispose()
        url = f"{PG_ADMIN}?options=-csearch_path%3D{schema_name}"
    try:
        store = Store(url)
        store.migrate()
        contacts, comms, generator = generate(n, "auto")
        write_store(store, contacts, comms, "copy" if backend == "postgresql" and n > 200_000 else "insert")
        store.dispose()
        runs = tempfile.mkdtemp(prefix="flow_runs_", dir=WORK)
        settings = Path(runs) / "settings.yaml"
        settings.write_text(yaml.safe_dump({"pipeline": {"runs_dir": runs, "match_leads_to_clients": False}}))
        record = {"date": now_iso(), "backend": backend, "contacts": n, "generator": generator,
                  "prefect": "running server" if server else "temporary server per run",
                  "machine": machine_info(), "versions": versions("prefect", "pandas", "sqlalchemy", "psycopg")}
        out_full, out_inc = Path(runs) / "full.json", Path(runs) / "incremental.json"
        full = run_child(python_child("bench.flow_scale", "child", url, str(settings), str(out_full)), timeout=timeout,
                         env=server)
        record["full"] = {k: full[k] for k in ("wall_s", "peak_rss_mb", "peak_tree_mb", "returncode", "timed_out")}
        record["full"].update(_flow_times(_summary(out_full)))
        if not incremental:
            return record
        record["changed_records"] = change_one_percent(url)
        inc = run_child(python_child("bench.flow_scale", "child", url, str(settings), str(out_inc), "--incremental"),
                        timeout=timeout, env=server)
        record["incremental"] = {k: inc[k] for k in ("wall_s", "peak_rss_mb", "peak_tree_mb", "returncode",
                                                     "timed_out")}
        record["incremental"].update(_flow_times(_summary(out_inc)))
        if full["returncode"] or inc["returncode"]:
            record["error_tail"] = (full["output_tail"] if full["returncode"] else inc["output_tail"])[-1500:]
        return record
    finally:
        if schema_name:
            admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE'))
            admin.dispose()


def markdown(records: list[dict]) -> str:
    """This benchmark's section of docs/benchmarks.md: the table, then where the time goes."""
    from bench.run_all import generic_markdown

    return generic_markdown(records) + "\n\n" + ANALYSIS


ANALYSIS = """\
Where the time goes (2026-12-06, fifth session, SQLite; this session's machine is an Intel Xeon with
2 vCPUs, slower than the fourth session's AMD EPYC: the same code took 132.7 s here against 94.8-103.8
s there, so the two sessions' figures are not comparable one to one. `flow_steps` are the flow's own
seconds per task, `stages` the find's and the steps' own timings. Runs on this machine vary by ~10%
from one to the next with nothing else running; a run taken while a helper ran tests (129.8 s) is
left out.)

- **1,000,000 contacts: 106.8 s / 2.76 GB with a temporary Prefect server per run, 107.1 s / 2.81 GB
  against a running Prefect server (`--prefect-server`, as scheduled deployments run), from 132.7 s /
  2.86 GB at the start of the session on the same machine (target 45 s and 3 GB: time not met, memory
  met).** Per task in the 106.8 s run: quality 18.2 s, find 29.8 s (normalise 11.4, write 6.7,
  compare 3.4, primary 2.4, explain 1.8, block 1.6), propose 40.0 s (planning 27.6 s, then storing
  12.3 s), report 7.2 s; about 11 s of Python start, imports and Prefect's temporary server outside
  the tasks (4 s with a running server). In the running-server run the planning took 36 s, the rest
  about the same: that is the machine's variance, not the server.
- **What changed this session.** Plans and proposals are one task (`plan-and-store-proposals`):
  forked helpers plan chunk after chunk while the flow process writes plans.jsonl and prepares each
  row (pairs, managers from the plan's own read, no read of every record's manager); the write
  transaction opens only once everything is planned (12 s at a million, the old store step held it
  14-20 s), so the review page and the CRM are not locked out while plans are built. Planning costs
  ~25% less CPU (cycle collector paused per chunk, no per-object dicts, cheaper fingerprints and
  JSON; byte-identical output). The database read is shared with a helper that reads the phones and
  e-mails and writes their run-folder copy; the quality report normalises phones and e-mails in a
  helper; the find reads the citation index in a helper while it normalises. Helpers are forked with
  the live objects frozen out of their cycle collections.
- **100,000 contacts: 22.8 s full and 20.0 s incremental after 1% changed on SQLite, 22.6 s and
  22.7 s on PostgreSQL** (16.7 s and 16.1 s on the fourth session's machine). The flow itself takes
  12-13 s (SQLite: quality 2.1, find 3.5, propose 3.9, report 2.5); the other ~10 s are Python's start,
  imports and Prefect's temporary server. The incremental run saves in the find (2.9 s against 3.5)
  but plans every group again (3.7 s): a plan holds the rows and links as read now, so reusing the
  last run's plan of an unchanged group would need its linked rows checked too.

Tried and reverted: staging the rows in a temporary table while they are planned, then swapping
them in (no lock at all while planning): at a million the staging slowed the planning to 39.9 s and
the swap (delete the old pending rows, copy 557 MB across) took 19.7 s, 60 s in all against 40 s.

The plan, in order of gain: (1) storing the proposals, 12 s with one CPU idle, most of it SQLite
writing 557 MB of plan JSON: a smaller plan (2) helps here too; (2) planning, ~39 CPU seconds for 122,600
groups: a plan is ~4.5 KB of JSON, a third of it the rows as read (`records`), which apply uses only
to describe a stale plan; (3) the single-threaded middle of the find (block, compare, train, primary,
explain: ~10 s with one CPU idle) and its write (6.7 s, most of it the normalised records kept for the
next incremental run); (4) phones and e-mails are still normalised twice, by the quality report and by
the find (~7 CPU seconds); (5) the HTML report (7 s, single-threaded, charts ~2 s)."""


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "child":
        child_run(argv[1], argv[2], argv[3], "--incremental" in argv)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--no-incremental", action="store_true", help="only the full run")
    parser.add_argument("--prefect-server", action="store_true",
                        help="run the flows against a Prefect server started once (as deployments do) instead of "
                             "a temporary server per run")
    args = parser.parse_args(argv)
    with prefect_server() if args.prefect_server else contextlib.nullcontext() as server:
        for n in [int(s) for s in args.sizes.split(",")]:
            for backend in args.backends.split(","):
                _one(backend, n, args, server)


def _one(backend: str, n: int, args, server: dict | None) -> None:
    """One size on one backend: measured, appended to the results and printed."""
    record = bench_one(backend, n, args.timeout, incremental=not args.no_incremental, server=server)
    append_result("flow_scale", record)
    f = record["full"]
    line = f"{backend:<10} {n:>9,} contacts ({record['prefect']}): full {f['wall_s']:.1f} s {_memory(f)}"
    if "incremental" in record:
        i = record["incremental"]
        line += f"; incremental after {record['changed_records']:,} changes {i['wall_s']:.1f} s {_memory(i)}"
    print(line)


def _memory(run: dict) -> str:
    """Peak RSS of the largest process, then the sampled peak of the whole process tree."""
    tree = run.get("peak_tree_mb")
    return f"{run['peak_rss_mb']:.0f} MB (tree {'?' if tree is None else f'{tree:.0f}'} MB)"


if __name__ == "__main__":
    main()
