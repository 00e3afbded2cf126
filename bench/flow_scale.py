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


def child_run(url: str, settings_path: str, out: str, incremental: bool, every_entity: bool = False) -> None:
    """In the measured process: run the flow (over the contacts, or ``every_entity`` type as the
    default flow does) and write its summary for the contacts to ``out``."""
    import os

    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from pipelines.cli import no_collection_at_exit
    from pipelines.prefect_api import early_server

    no_collection_at_exit()  # as the CLI's main does
    with early_server() as ready:  # as the CLI's flow commands start it
        from pipelines.flows import dedup_flow
        from pipelines.steps import import_step_modules

        import_step_modules()  # as the CLI's run and find commands do
        ready()
        summary = dedup_flow(db=url, entity_types=None if every_entity else ["contact"], settings_path=settings_path,
                             incremental=incremental)
    result = {**summary["entities"]["contact"], "flow_seconds": summary["flow_seconds"], "flow_s": summary["seconds"],
              "groups_per_entity": {e: v["groups"] for e, v in summary["entities"].items()}}
    Path(out).write_text(json.dumps(result, default=str))


def change_one_percent(url: str) -> int:
    from crm import schema
    from crm.store import Store

    store = Store(url)
    c = schema.contacts
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=2)
    with store.engine.begin() as conn:
        changed = conn.execute(c.update().where(c.c.id % 100 == 7).values(
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


def bench_one(backend: str, n: int, timeout: float, incremental: bool = True, server: dict | None = None,
              every_entity: bool = False) -> dict:
    """``every_entity``: a demo CRM (crm.demo: n contacts, 30% as many companies and leads, with
    their deals, tasks...) and the default flow over all three types, leads vs clients included."""
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
        if every_entity:
            from crm.demo import DemoSizes, generate_demo

            generate_demo(store, DemoSizes(contacts=n, companies=n * 3 // 10, leads=n * 3 // 10, managers=20), seed=3)
            generator = "crm.demo.generate_demo (30% as many companies and leads)"
        else:
            contacts, comms, generator = generate(n, "auto")
            write_store(store, contacts, comms, "copy" if backend == "postgresql" and n > 200_000 else "insert")
        store.dispose()
        runs = tempfile.mkdtemp(prefix="flow_runs_", dir=WORK)
        settings = Path(runs) / "settings.yaml"
        settings.write_text(yaml.safe_dump({"pipeline": {"runs_dir": runs, "match_leads_to_clients": every_entity}}))
        record = {"date": now_iso(), "backend": backend, "contacts": n, "generator": generator,
                  "entity_types": "contact, company, lead" if every_entity else "contact",
                  "prefect": "running server" if server else "temporary server per run (started early)",
                  "machine": machine_info(), "versions": versions("prefect", "pandas", "sqlalchemy", "psycopg")}
        out_full, out_inc = Path(runs) / "full.json", Path(runs) / "incremental.json"
        every = ["--every-entity"] if every_entity else []
        full = run_child(python_child("bench.flow_scale", "child", url, str(settings), str(out_full), *every),
                         timeout=timeout, env=server)
        record["full"] = {k: full[k] for k in ("wall_s", "cpu_s", "peak_rss_mb", "peak_tree_mb", "returncode", "timed_out")}
        record["full"].update(_flow_times(_summary(out_full)))
        if not incremental:
            return record
        record["changed_records"] = change_one_percent(url)
        inc = run_child(python_child("bench.flow_scale", "child", url, str(settings), str(out_inc), "--incremental",
                                     *every), timeout=timeout, env=server)
        record["incremental"] = {k: inc[k] for k in ("wall_s", "cpu_s", "peak_rss_mb", "peak_tree_mb", "returncode",
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
Eighteenth session (2026-12-07, an AMD EPYC with 2 vCPUs, quiet and faster than the seventeenth's; quick
runs of the flow child, SQLite, contacts only, temporary server, not recorded in results/):

- **1,000,000 contacts: full 82.8 s at the session's start (flow 76.3 s, 120 CPU-s, tree 2,586 MB), 80.7 s
  at its end (flow 74.5: quality 17.3, find 29.6, propose 26.6; 115.7 CPU-s, tree 2,651 MB).** The same
  code took 117.8 s in the seventeenth session: the machine, not the code. Target 45 s: not met; memory met.
- **Incremental after 1% changed: 84.3 s and a tree of 2,994 MB at the start; 79.2 s and 2,672 MB at the
  end, 76.7 s and 2,591 MB for an incremental run on an incremental run.** Taking the last run's normalised
  records: 14.7 -> 8.1 CPU-s and its peak 2,650 -> 2,292 MB (an incremental run keeps its copy's content
  hashes, table_records_hashes.parquet, so the next reads 8 MB instead of hashing the 75 MB copy again,
  ~3.4 s; the records then and now put in order with one take instead of three copies; the changed ids
  found with numpy, not Python sets, ~2.7 s; the quality check's phones and e-mails let go before the last
  run's records are loaded). Giving the copies' freed memory back to the system took the find's peak RSS
  from 2,544-2,763 MB (run to run) to 2,265 MB: malloc kept ~1 GB the copies had freed.
- Where a full run's wall time goes (the tree's CPU sampled every 0.5 s): start-up ~5 s on one CPU; the
  quality step ~1.3 CPUs; **the find ~24 of its 28 s on one CPU** (its threads comparing take turns at
  the GIL: 6 CPU-s over 8 comparisons, the first name's Cyrillic words 2 s of them; the planners wait for
  its groups); the propose step both CPUs throughout. Per process: the flow process 59.8 CPU-s, the two
  planners 36, the read helpers ~14, Prefect's server 5.3. Starting the planners before the normalised
  records are written (4 s sooner) put 225 MB on the tree's peak (3,345 MB in an incremental run): not kept.
- The report's new table of records left out of their group scanned every pair per record (~3.5 s at
  1M): the pairs are picked once.

Nineteenth session (2026-12-07, the same machine, quiet; `python -m bench.flow_scale --sizes 1000000
--backends sqlite`, recorded in results/):

- **1,000,000 contacts: full 63.6 s (flow 58.3: quality 13.9, find 25.9, propose 17.2; 94.2 CPU-s),
  peak RSS 2,415 MB, tree 2,832 MB; incremental after 1% changed 62.4 s, tree 2,843 MB.** The same command
  at the session's start measured full 68.6 s / incremental 70.2 s with the old sampler (below). Target
  45 s: not met; memory met.
- The planners take an entity's groups as soon as its primaries are ranked (find_duplicates' ``ranked``
  callback), before the pairs are explained and the files written, which leave one CPU idle: the propose
  step 20-25 s -> 15-17 s; the tree's peak +~170 MB (2,651 -> 2,823 MB full, 2,845 MB incremental: under
  3 GB, unlike starting them before the normalised records were written, tried in the eighteenth session).
- The measuring itself slowed the flow: the tree's PSS was read 5 times a second from every process's
  smaps_rollup, a walk of its page tables that holds up the process's own memory calls. The summed RSS
  (a counter) is now read first and PSS only where that sum is above the peak so far (PSS is never more
  than RSS): the same peaks, and the flow as it runs unmeasured (direct runs: 60-63 s full).
- Python's final garbage collection walked what the run left alive: ~0.8 s after the flow ended. The CLI
  (and the flow child) freeze those objects in their last exit handler.
- Tried and dropped: the names normalised by an idle planner while the quality check runs (from the
  table's copy, in chunks, read back sharing repeated strings; the same prepared records): the find's
  normalising 5.7 -> 4.7 s, but three processes on two CPUs slowed the quality step by as much (A/B runs:
  no gain beyond their 4 s spread).
- Where the wall time goes now (tree's CPU per second): start-up 4.4 s, ~1 CPU (imports beside the
  temporary server's start); the quality step's reading both CPUs, then ~5 s on one (the table built and
  copied, the checks before the phones' helper starts); **the find from its start to the ranked groups
  ~15 s on one CPU** (normalise, block, compare, train, score, group, rank); from there to the end both
  CPUs (planners 36 CPU-s; the plans are ~2.9 KB of JSON each, 395 MB for 123,059 groups, written to
  plans.jsonl and the database). 45 s needs the find's one-CPU stretch split (names and comparisons in
  processes) and the planners' work cut (smaller plans: the records' rows and fingerprints are a third of their bytes).

Twentieth session (2026-12-08, another machine: an Intel Xeon with 2 vCPUs, slower than the AMD EPYC of the
nineteenth; `python -m bench.flow_scale --sizes 1000000 --backends sqlite`, recorded in results/, quiet):

- **1,000,000 contacts: full 83.9 s (flow 76.6; 125 CPU-s), peak RSS 2,445 MB, tree 2,894 MB; incremental
  after 1% changed 81.8 s, tree 2,823 MB.** Direct runs of the flow child without the benchmark's sampler, on
  this machine in the same hour: the session's first code (ae2352f) 84.2 and 82.7 s, the last 76.9 and 74.0 s
  (user CPU 107 -> 93-97 s). Target 45 s: not met; memory met. At the session's start the same first code took
  71-76 s here: single runs on this machine differ by up to ~10 s over an hour.
- Kept: the dedup commands import the steps' modules (~0.5 s) while they wait for Prefect's temporary server
  (2.4 s of waiting at the start); the planner folds each name for the conflict check once per process
  (plan_json of 30,000 groups 7.0 -> 6.5 CPU-s); fewer conflicts to write (English names by ear).
- Tried and dropped: (1) the communications' reading helper normalising the phones and e-mails once it has read
  them, for the quality check (measured apart: reading them back 1.6 s, normalising 5.7 s, sending them back
  pickled 2.2 + 0.7 s: the helper's path, ~12 s from its start, is longer than the main process's ~10.7 s to the
  point it needs them, so the check would end no sooner); (2) glibc's mmap and trim thresholds raised
  (MALLOC_MMAP_THRESHOLD_=32 MB): system time 16.5 -> 13.9 s, wall the same, +130 MB peak.
- Where the time goes (this machine, timestamps in the flow): start-up to the flow's body 4.7 s (2.4 s of it
  waiting for the server), the quality step's reading 4.3 s on both CPUs, building the table and checking 10 s
  on ~1.3 CPUs, the find to the ranked groups ~17 s on one CPU (normalise 7.5, compare 5.0: its 8 comparisons
  in 2 threads take 6.2 CPU-s; the first name's Cyrillic facts and the person facts are built once and shared,
  so comparisons in processes would build them twice), then ~23 s on both CPUs (planners ~41 CPU-s: build_plan
  16, read_snapshots 8, to_json 5.7, comm keys 2.5, staging 3.4), storing ~7 s.

Seventeenth session (2026-12-07, the same AMD EPYC with 2 vCPUs; a loop of 20 million additions took
1.3-2.5 s over the session; quick runs of the flow child, SQLite, contacts only, temporary server, not
recorded in results/):

- **1,000,000 contacts on a quiet machine: 117.8 s (flow 107.6 s: quality 25.0, find 41.9, propose 39.5;
  159.7 CPU-s, tree 2,605 MB).** The session's first code took 89-132 s here in its first hour: single
  runs of one code differ by tens of seconds on this machine. Target 45 s: not met; memory met.
- **A run takes the last run's merge plan of a group whose rows did not change** (merge_rules.plan.plan_json,
  pipelines.steps._plans_base): the same primary and duplicates, every row read with its fingerprint, the
  same managers losing access, and the same planner_identity (merge settings, the code of merge_rules/,
  matchers/ and the schema, the phone and e-mail libraries). Planning 10,000 groups of the 1M database in
  one process: made 2.85 CPU-s, taken 1.43 (reading the snapshots and fingerprinting their rows remain,
  ~140 us a group), plus ~0.9 s once per planner to index the last run's plans.jsonl (397 MB). At 1M after
  1% changed: 120,347 of 123,059 plans taken, planning 21.1 s against 26.5-27.9 s in a full run.
- **Incremental at 1M is still not faster than a full run: 124.9 s (flow 113.6: quality 25.0, find 50.5,
  propose 37.6), tree 3,110 MB** (over 3 GB; 3,031-3,069 MB earlier this session, before the plans were
  taken). Taking the last run's normalised records costs ~21 s of the find against ~14 s normalising all
  of them; the swap removes and inserts all 123,059 groups and their plans again (16.3 s against 11.1 s).
- Where a full run's CPU goes (py-spy, every process): the planners ~57 CPU-s (building 36, JSON 10,
  staging 8), the quality step ~37 (reading 19, checks 18), the find's own process ~23, storing the
  proposals ~9, the report ~6.5, Prefect's server ~13. ~160 CPU-s on 2 CPUs cannot make 45 s.

Sixteenth session (2026-12-07, an AMD EPYC with 2 vCPUs that got slower as the session went on: a loop of
20 million additions took 2.5-3.0 s at its end, against 1.32-1.42 s in the eleventh session; quick runs
of the flow child, SQLite, contacts only, temporary server, not recorded in results/):

- **Start-up: Prefect imported jsonschema, which built a Lark parser of the IRI grammar at import**
  (rfc3987_syntax, brought by Jupyter's packages: 2-4 s of every process importing Prefect, the command
  and Prefect's temporary server alike), and the server's block registration imported every Prefect
  collection (prefect-dask and Dask, ~1 s). The package marks that module absent before Prefect is
  imported (pipelines/__init__.py), the server is started through it (pipelines/prefect_server.py)
  and registers no block types: from a command's start to its server answering, 15.6-17.5 s -> 8.7-9.8 s
  (a busy machine); `crm-dedup run` on the 10,000-contact demo 34.4 -> 25.3 s.
- **1,000,000 contacts, back to back on a quiet machine: the session's first code (de71e5e) 165.1 s
  (flow 142.2 s, 23 s outside it), its last code 151.0 s (flow 138.6 s, 12.5 s outside it)**; an
  earlier run of the last code 140.0 s. The same code took 98-102 s on this machine at the fifteenth
  session's end: the machine, not the code, is ~1.5 times slower now. Target 45 s: not met; memory
  met (tree 2,550-2,746 MB).
- The planner per phase (10,000 groups of the 1M database, one process, CPU time): reading 67 us,
  comm keys 29, the plan object 13, fingerprints 62 (a record's ~13 us: its repr text), deciding the
  fields 77, communications 11, links 10, access 6, the JSON's dicts 48 and encoding 39: 366 us a
  group. Working out each field's rule once per chunk saved ~5 us (left out: not worth a parameter).
  No hot spot: plans built column-wise, or fewer in the run, remain the way to halve it.
- The HTML report (the longest step of a demo run, ~4.7 s): its 11 figures take ~3 s, drawn twice each
  (a layout engine lays out in a first draw); laying out once and drawing once was no faster.

Fifteenth session (2026-12-07, an AMD EPYC with 2 vCPUs; quick runs of the flow child, SQLite, contacts
only, temporary server, not recorded in results/):

- **1,000,000 contacts: 102.1 s (137.8 CPU-s, tree 2,651 MB) at the session's start (bfcfe17), 98.0 s at
  its end**, each on a quiet machine. Target 45 s and 3 GB: memory met, time not. Steps at the end:
  quality 19.7 s, find 32.7 s (compare 6.6 s: the first-name comparison now measures typos on the
  Cyrillic letters, ~+1.4 s), propose 29.8 s. This machine is slower than the fourteenth session's
  (85.1 s for bfcfe17's code there).
- A profile of the whole run (py-spy, every process, 40 samples/s) found no single hot spot: the
  planners ~50 CPU-s (building plans 16, reading snapshots 9, JSON 8, staging and part files ~13), the
  quality step ~25 (reading the CRM 13, checks 11), the find ~18 (normalising 8), storing the proposals
  ~9, the report ~7, Prefect's server and threads ~10. Halving the wall time needs about half of that
  work gone: plans built column-wise instead of per group, normalisers compiled, or fewer plans made in
  the run (planned when a group is first opened). This session went to the bugs four user probes found
  instead; the analysis of the twelfth session stands.

Fourteenth session (2026-12-07, an AMD EPYC with 2 vCPUs; quick runs of the flow child, `bench.flow_scale
child`, SQLite, contacts only, temporary server, not recorded in results/):

- **1,000,000 contacts, back to back on a quiet machine: this session's code 85.1 s, 115.5 CPU-s, tree
  2,561 MB; session 13's last code (caf15d1) 86.3 s, 118.7 CPU-s, tree 2,596 MB.** Target 45 s and 3 GB:
  memory met, time not. Steps (this session / caf15d1): quality 16.7 / 17.9 s, find 29.3 / 29.0 s,
  propose 25.5 / 25.9 s. This session's changes (small-CRM model priors, the chaining guard's rule and
  its cut_off list: 503 records at 1M, phone fallback order, comm keys with extensions, SQLite
  AUTOINCREMENT tables) cost nothing measurable at 1M.
- The same machine under load (helpers' tests beside it) gave 126-157 s for this code and 94 s for
  caf15d1 a few minutes apart; session 13's note (142 s here) was measured under load too. Single runs
  are comparable only back to back on a quiet machine.
- The analysis of the twelfth session stands: ~115 CPU-s of work on 2 CPUs here; 45 s needs a
  columnar planner or compiled normalisers, or a relaxed target.

Twelfth session (2026-12-07, an Intel Xeon with 2 vCPUs, faster than the eleventh session's: the 1M
demo database took 63 s to generate against ~100 s; runs of one code differ by 1-4 s here):

- **1,000,000 contacts: SQLite 66.4 s (tree 2,490 MB), PostgreSQL 73.6 s (tree 2,617 MB)** at the
  session's last commit. Before this session's changes the same flow took 70.1 / 71.6 s here
  (102.4 / 102.6 CPU-s); with plans written by orjson 67.3 / 68.4 s (97.5 / 97.7 CPU-s), back to
  back. Target 45 s and 3 GB: memory met, time not.
- **Why 45 s is out of reach on 2 CPUs without another design:** the flow uses ~98 CPU-s (planners
  ~37, the main process ~45 over reading, checking, finding and storing, helpers ~10, Prefect's
  server ~7, the HTML report ~5), so even with both CPUs busy all the time it would take ~49 s; it
  takes ~67 s because ~20 s of it run on one CPU (the server's start ~5 s; the find from
  normalising to ranking ~15 s, a chain of steps each needing the one before; parts of the quality
  check). Planning (~270 us a group in one process: reading ~32, comm keys ~13, deciding fields
  ~37, fingerprints ~31, JSON 53, staging ~20, the rest - phones and e-mails, links, access, the part
  file - ~85) and normalising (~6 s of many small pandas steps) are near what Python does without
  columnar planning or compiled normalisers.
- **Plans are encoded by orjson** (the same text: compared on 20,000 plans of the 1M database, and
  by the tests): 67 -> 53 us a plan with building its dicts; a NaN is written as null.
- **Incremental at 1M** (1% changed): the quality check's normalised phones and e-mails now serve
  the changed records and are let go before the last run's records are taken: tree 3,284 -> 2,861-
  2,978 MB (under 3 GB), 81-82 s against 67-70 s full. Taking the last run's records (content check
  4.0 s, loading 2.5, ordering 0.9, in all ~11 s) still costs more than normalising all of them
  with the quality check's phones and e-mails (5.9 s).
- Measured and left: SQLite's json() check of the group rows in the swap (0.1 of 2 s); orjson for
  the pairs of each group (1.6 -> 1.0 CPU-s); starting the planners before the find writes its
  normalised records (the tree would reach ~2.9 GB).

Eleventh session (2026-12-06, an AMD EPYC with 2 vCPUs about 1.3-1.6 times slower than the tenth
session's, and noisy: the same code took 78.8 and 99.3 s for the same 1M flow an hour apart; a loop
of 20 million additions took 1.32-1.42 s):

- **1,000,000 contacts: SQLite 94.7 s (tree 2,420 MB), PostgreSQL 88.2 s (tree 2,546 MB)**; later
  SQLite runs 97.6 and 105.0 s. Target 45 s and 3 GB: memory met, time not (on this machine the
  tenth session's code took 81.5-111.1 s). 100,000 contacts: SQLite 18.6 s full, 19.6 s incremental;
  PostgreSQL 19.6 and 22.7 s.
- **Planner:** a field whose records all hold one value (of one type) skips rules flagged
  `unanimous` (their outcome is then the primary's value): plans byte for byte the same (20,000
  groups of the 1M database and every demo group, two conflict policies), build 110 -> 90 us a
  group; the whole flow, back to back in a quiet hour: 81.7 / 81.5 s and 116.6 / 115.9 CPU-s
  before, 78.8 / 79.3 s and 112.0 / 111.7 CPU-s after.
- **Incremental runs are exact now, and not faster:** changed records are found by content (each
  record's fields and the order of its values, against the last run's copy of the table), so edits
  that left modified_at alone are seen; every candidate pair is scored again with the last run's
  model (reused scores kept the last run's term frequencies: 7% of pairs' weights differed from a
  full run's in the test). At 1M after 1% changed: 125.0 / 125.9 s, tree 3,135-3,306 MB, against
  97.6 / 105.0 s full: taking the last run's normalised records (content check 4.9 s, loading them
  3.9 s, putting them in order 2.7 s: 12.4 s) costs more than normalising all records (9.7 s, with
  the quality check's phones and e-mails); the re-run's swap also removes the 122,648 pending groups
  and plans of the full run. scores.parquet is no longer written.
- Where the planning time goes (per group, this machine): reading 53 us, comm keys 20, fingerprints
  35, deciding 55, JSON 90 (dicts 39, encoding 50); staging in the database ~50. Tried: SQLite's
  json_each() for the long IN lists of the bulk reads (no gain). A timeline of CPU use (both CPUs
  sampled every 0.5 s): startup ~6 s on one CPU; quality check 18 s and find 29 s with ~14 s of
  them on one CPU (blocking to ranking); the planners busy on both CPUs from the find's ranking to
  the end of planning; the swap ~4-6 s on one CPU.

Tenth session (2026-12-06, an AMD EPYC with 2 vCPUs; the ninth session's code took 69.4 and 60.5 s
here for the same 1M flow, so single runs differ by up to ~10 s):

- **1,000,000 contacts: SQLite 60.1 s (tree 2,490 MB), PostgreSQL 63.1 s (tree 2,506 MB)** with a
  temporary Prefect server; other runs of this code on SQLite: 57.5 and 60.3 s. Target 45 s and
  3 GB: memory met, time not. 100,000 contacts: 12.9 s full and 13.0 s incremental on SQLite,
  12.8 and 13.1 s on PostgreSQL.
  - **Plans are stored as they are made, in a table of their own** (dedup_plans, migration 0007).
    Each planning chunk stores its 5,000 plans under the run in a short transaction; the swap of the
    pending groups at the end writes small rows only. Texts the planner has just encoded are stored
    on SQLite without json() (its encoder refuses NaN, so it writes JSON only): json() of the 415 MB
    of plans of a million contacts took 3.1 of the 3.9 s of their insert. Storing: 9.8 -> 4.4-5.6 s
    while the write lock is held; planning 13.8 -> 15.3-17.0 s (the planners now write the plans
    to the database too, on CPUs that were already busy), so the run gained ~2-4 s.
- Where the time goes now (one run, py-spy on every process, 20 samples/s): ~4 s before the flow
  (imports ~1 s, then waiting for the server, which imports its own code for ~2 s); reading the CRM
  ~5 s on both CPUs; building the table, the quality checks and the find's normalising, blocking and
  comparing ~20 s with one CPU mostly idle (names alone 4.8 s); the find's writing ~5 s, the planners
  beginning beside it; planning ~15 s on both CPUs; the swap ~4.5 s beside the report.
- Looked at and left: the quality check's phones and e-mails are already shared with a helper and
  balanced (5.9 s at 1M); running the quality check beside the find in a forked helper would copy
  the table's pages (reference counts) and take the tree over 3 GB; json.dumps of member and manager
  ids and SQLAlchemy's own work in the swap are ~1 s together; orjson for the plans would save ~1.2
  CPU-s of ~28 (it refuses the column names SQLAlchemy gives as str subclasses without a slower path).

Ninth session (2026-12-06, an Intel Xeon with 2 vCPUs; runs of the same code varied by +-10 s, e.g.
109.6, 90.3 and 99.6 s for the eighth session's code on the same 1M database):

- **1,000,000 contacts: SQLite 94.9 s (tree 2,436 MB), PostgreSQL 98.2 s (tree 2,522 MB)** with a
  temporary Prefect server, started early. Target 45 s and 3 GB: memory met, time not. The runs
  are within 8 s of their flow's own time now (it was 10-19 s on this machine).
  - **Prefect's temporary server is started first thing** by every command that runs a flow (and by
    this bench's child; pipelines/prefect_api.py), not at the first flow call: the server starts
    while the command imports, and the command no longer imports the server's code itself. A flow
    that does nothing: 11.3 -> 7.5 s. `crm-dedup run` on the 10,000-contact demo: 22 -> 17 s.
  - **PostgreSQL reads long id lists as one array parameter** (`= ANY(...)`) instead of an expanding
    IN of 2,000 placeholders: psycopg spent ~25 ms splitting each such statement, and the server
    parsed them. The snapshots of 5,000 groups at 1M: 0.99 -> 0.49 s (SQLite: 0.53 s). Propose on
    PostgreSQL is now as fast as on SQLite (37.7 and 37.0 s).
- Why 45 s stays out of reach is unchanged (eighth session): ~130-170 CPU-s of work on 2 CPUs. A
  profile of the whole run (py-spy, every process) put the planners at ~50 CPU-s (building the plans
  ~19, JSON ~14, reading the rows ~10, fingerprints ~4.5), the quality step at ~25 (reading ~12,
  checks ~14), storing the proposals at ~14.
- Tried and dropped: **reading the records with connectorx or ADBC** (Rust/C straight into Arrow:
  contacts 5.0 -> 2.3 s, communications 4.4 -> 3.3 s, the quality step 22 -> 15 s). Both bundle a
  SQLite library of their own, and two SQLite libraries in one process break each other's locks:
  connectorx did not see rows committed to the WAL by the store's connection (a read after an
  insert returned nothing), and after an ADBC read the store's next query failed with "disk I/O
  error". For PostgreSQL alone (~3 s at 1M) it was not worth a second reading path.
- **100,000 contacts at the end of the session: SQLite 20.8 s full and 19.7 s incremental,
  PostgreSQL 19.5 s and 19.5 s** (eighth session, on its EPYC: 22.7/21.6 and 29.2/22.5 s).
- `crm-dedup check` of a 20-row CSV against the 1M database (measured by hand, not recorded here):
  45-47 s, now 41-42 s, taking the existing records as the last run normalised them. Most of what is
  left: reading the CRM (~10 s), loading and ordering the last run's normalised records (~8 s), the
  record facts the find ranks primaries by (~5 s), and the temporary server.

Eighth session (2026-12-06, an AMD EPYC with 2 vCPUs whose speed drifted within the session: the
seventh session's code took 102.2, 101.3, 88.6 and 87.0 s here in its first hour, and a fixed planning
micro-benchmark ran 20% slower at 15:15 than at 14:55, so differences under ~10 s are noise):

- **1,000,000 contacts: 90.5 s, tree 2,501 MB (temporary server; target 45 s and 3 GB: memory met,
  time not).** Where the CPU goes, sampled per process over a whole run: the flow process 66-80
  CPU-s, the two planners 40-44, Prefect's temporary server 5-7, the read and report helpers ~13:
  127-138 CPU-s in all. Two CPUs cannot do that in under 64-69 s even kept busy all the time, so the
  45 s target needs a third of the work gone, not only better overlap. One CPU idles for ~4 s while
  the temporary server starts, ~6 s in the quality step, ~18 s in the find (normalising, blocking to
  explaining, each stage 1-3 s) and ~8 s while the proposals are stored.
- Planning keeps the cycle collector paused while the plans are written as JSON too: 1.75 -> 1.50
  CPU-s per 5,000 groups (same plans, measured back to back on 40,000 groups of this database).
- **Every entity type at 200,000 contacts (60,000 companies and leads): 50.0 s, tree 1,437 MB**
  (seventh session, on its Xeon: 51.7 s, 1,845 MB). Leads vs clients now reuses the records the
  run's finds normalised instead of reading and normalising every contact and company again: 15.9
  -> 5.1 s for that step, with the same pairs.
- **PostgreSQL, 1,000,000 contacts: 154.9 -> 118.1 -> 95.6 s (trees 2,584-2,642 MB).** This
  machine's PostgreSQL runs with autovacuum off, and the benchmark's bulk load left every table
  without planner statistics: the planning's lookup of a chunk of 2,000 contacts' communications
  scanned every contact's (a bitmap scan on entity_type, 2.2 million rows filtered; 0.4-0.6 s, then
  0.08-0.18 s). A run now first analyzes the tables autovacuum would have (Store.refresh_statistics,
  ~1 s here): propose 79.7 -> 46.1 s. Then plans and pairs compressed with lz4 instead of pglz
  (migration 0006; storing the 122,600 groups alone: 11.9 -> 7.9-8.5 s): propose 40.5 s. The
  quality and find steps of the last run were 7 s faster than the run before with the same code:
  the machine's drift again.
- **100,000 contacts at the end of the session: SQLite 22.7 s full and 21.6 s incremental,
  PostgreSQL 29.2 s and 22.5 s** (the flow's own time: 11.9/10.6 and 14.9/11.3 s; the PostgreSQL
  full run's open step includes analyzing the freshly loaded tables, 0.5 s). About 10 s of each run
  is outside the flow: Python's start and imports (~2.5 s), Prefect's temporary server (~4 s to
  start, measured alone), shutting down.
- Tried and dropped: (1) inserting each chunk's proposals as soon as it is planned (storing while
  planning): it holds the write lock for the whole planning, and the tested promise that a person can
  approve a pending group while a run plans broke (with one process the run waited on itself). (2)
  Leaving out SQLite's json() check of the stored texts: json_valid() costs as much, and dropping the
  check saves ~2 s of ~90 while a bad text would no longer be refused. (3) Starting the report, at a
  lower priority, as soon as the finds are done: no difference beyond the noise.

Where the time goes (2026-12-06, seventh session, SQLite, an Intel Xeon with 2 vCPUs, slower than the
sixth session's EPYC: session 6's code took 91.0 s and a tree of 3,040 MB here, its first record of
the day. Runs of the same code vary by +-5 s on this machine. `flow_steps` are the flow's own seconds
per task, `stages` the find's and the steps' own timings; `peak_tree_mb` is the summed PSS of the
flow process, every helper it forked and, with a temporary server, that server, sampled every 0.2 s.)

- **1,000,000 contacts, seventh session: 82.2 s and 88.4 s with a temporary Prefect server per run
  (trees 2,723 and 2,714 MB), 78.4 s against a running server as served deployments have (tree 2,506
  MB); from 91.0 s and 3,040 MB. Target 45 s and 3 GB: memory met with ~280 MB to spare; time not
  met.** What changed:
  - the find takes the phones and e-mails the quality check normalised (they were normalised twice,
    ~4 CPU-s);
  - the find frees the table once the records are normalised (largest process 2,861 -> ~2,500 MB);
  - the planners are forked at the start of the flow, while its process is small; they read the
    citation index during the find (that helper used to be forked from the process holding the table
    and held ~1.2 GB) and plan the groups from the moment the find has written and freed its
    normalised records, while it writes the rest (propose 32.7 -> ~29 s);
  - the communications are copied to the run folder in chunks (their helper held 1.2 GB beside the
    read of the records).
  - the records' frame is built without copying its columns three times (1.25 s, and a copy of the
    table less at the quality check's peak); known phones and e-mails are taken whole when they are
    the table's own. With these, the last run: 81.4 s, tree 2,574 MB (largest process 2,290 MB).
  Tried and dropped: planning from the start of the find's write, before the normalised records were
  freed: 69.3 s flow time but a tree of 3,031-3,068 MB.
- **Where the last run's 82 s go** (one CPU idle where marked *): ~8 s Python start, imports and the
  temporary server*; quality 17 s (database read 4 s on both CPUs, then 4 s of building the table*,
  then the checks, partly on both); find 26 s (normalising 8.5 s*, now the names alone; block to
  explain 8 s*; writing 8 s, the last 4 s beside the planners); propose 29 s (planning on both CPUs,
  storing ~8 s*, half of it beside the report). The next steps, in order of gain: storing while the
  plans are made (it would hold SQLite's write lock for the whole planning), the names normalised in
  two processes (the planners are idle then), the quality check's table building and the find's
  per-role factorising done once for both, and SQLite's json() check of every stored plan (~1.5 s).
- **Every entity type (`--every-entity`): 200,000 contacts with 60,000 companies and 60,000 leads
  (crm.demo), the default flow with leads vs clients: 51.7 s, tree 1,845 MB.** The same database
  with the sixth session's code took 57.7 s and 57.1 s (trees 1,754 and 1,779 MB; measured from a
  worktree, not recorded here): each entity's groups are now planned while the next entity is
  checked and found (propose 13.5 -> 5.2 s; those steps slow down by ~3 s). Leads vs clients is the
  longest step there (12 s): it runs a whole find over the leads and every client and keeps only the
  lead-client pairs.
- **100,000 contacts, seventh session: 18.0 s full and 17.9 s incremental after 1% changed on
  SQLite, 20.1 s and 19.2 s on PostgreSQL; trees 1.0-1.2 GB** (fifth session on a Xeon: 22.8/20.0
  and 22.6/22.7 s).

Sixth session (AMD EPYC):

- **Memory was under-reported until now.** The flow forks helpers (reading, normalising, the
  citation index, planning), and `peak_rss_mb` sees only the largest process. Sampled over the whole
  tree (the flow's steps run on their own, without Prefect), the flow at a million contacts held
  about 3.7 GB at the start of this session, not the 2.8 GB its main process showed: the citation-index helper stayed alive, idle, until the end of the
  find, holding ~1 GB of pages that the flow process had changed since the fork. It now stops as
  soon as its result is in, and steps give freed memory back (malloc_trim) before forking and after
  the quality check and the find: 84.0 s, tree 2,967 MB.
- **1,000,000 contacts now: 74.5 s, tree 2,936 MB (main process 2,798 MB), with a temporary Prefect
  server; from 86.3 s at the start of the session on this machine (target 45 s and 3 GB: time not
  met; memory at the limit).** Runs of the same code vary: 74.5 s / 2,936 MB, 82.2 s / 3,020 MB and,
  after the review fixes (which change no step's work), 77.7 s / 2,971 MB in this file; 76.7 s /
  2,883 MB and 78.3 s / 3,025 MB for a first and a second run on one
  freshly generated database (no first-run penalty); the tree's peak is the find's, plus the
  temporary server's ~190 MB. Per task in the 74.5 s run:
  quality 14.6 s, find 21.3 s (normalise 8.3, write 4.6, compare 2.1, primary 1.8, explain 1.1),
  propose 31.0 s (the HTML report is written in a forked helper while the proposals are stored,
  where one CPU was idle, so the report task only collects it), ~7 s outside the tasks. Plans are
  stored compact (defaults and empty columns left out, 22% smaller). The name caches are emptied once
  the names are normalised: they kept ~0.5 GB in the flow process to the end of the run (78.0 s and
  3,006 MB before that).
- **Tried and dropped: the quality check beside the find** (in a forked helper that got the table by
  the fork): 75.9 s, but the tree held 3.8 GB, because the helper kept copies of every page of the
  table that the find touched (reference counts are writes). The 10:38 record is that run. A first
  version forked from one of Prefect's threads and deadlocked a child on an import lock held by the
  flow's thread at the fork; helpers are now forked from the flow's own thread only.
- **Planning is slower inside the flow than alone** (23.4 s against 18.7 s for the same groups run
  on their own, storing 9.2 against 8.3): the flow process is ~1.1 GB when it forks the planners
  (modules, caches, freed memory it cannot give back) and pays copy-on-write faults for every page it
  writes afterwards. A leaner flow process at that point is the next thing to look at.
- **100,000 contacts: 16.3 s full and 16.2 s incremental after 1% changed on SQLite, 18.6 s and
  17.6 s on PostgreSQL; the process trees 1.1-1.2 GB** (fifth session, on its Xeon: 22.8/20.0 and
  22.6/22.7 s). About 7 s of each is Python's start, imports and Prefect's temporary server. The
  incremental run saves in the find but plans every group again.

The plan, in order of gain: (1) planning, ~28 CPU seconds for 122,600 groups, and the flow process's
size when it forks the planners; (2) the quality check and the find normalise phones and e-mails
twice (~7 CPU seconds), and the quality check's single-threaded part (~5 s) could run beside the
find only if it did not hold a copy of the table (e.g. text columns held in Arrow, not as Python
strings); (3) the find's single-threaded middle (block, compare, train, primary, explain: ~8 s with
one CPU idle) and its write (4.3 s); (4) ~8 s of Python start, imports and Prefect's temporary
server (~2 s with a running server)."""


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "child":
        child_run(argv[1], argv[2], argv[3], "--incremental" in argv, "--every-entity" in argv)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--no-incremental", action="store_true", help="only the full run")
    parser.add_argument("--prefect-server", action="store_true",
                        help="run the flows against a Prefect server started once (as deployments do) instead of "
                             "a temporary server per run")
    parser.add_argument("--every-entity", action="store_true",
                        help="a demo CRM with companies and leads (30%% as many as contacts) and the default flow over "
                             "all three types, instead of contacts alone")
    args = parser.parse_args(argv)
    with prefect_server() if args.prefect_server else contextlib.nullcontext() as server:
        for n in [int(s) for s in args.sizes.split(",")]:
            for backend in args.backends.split(","):
                _one(backend, n, args, server)


def _one(backend: str, n: int, args, server: dict | None) -> None:
    """One size on one backend: measured, appended to the results and printed."""
    record = bench_one(backend, n, args.timeout, incremental=not args.no_incremental, server=server,
                       every_entity=args.every_entity)
    append_result("flow_scale", record)
    f = record["full"]
    what = "contacts" + (" (+30% companies and leads)" if args.every_entity else "")
    line = f"{backend:<10} {n:>9,} {what} ({record['prefect']}): full {f['wall_s']:.1f} s {_memory(f)}"
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
