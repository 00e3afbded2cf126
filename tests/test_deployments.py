"""The schedules: prefect.yaml deploys to a Prefect server, and the served deployments run."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def in_fresh_thread(fn):
    """Run ``fn`` in a thread with no event loop: a browser test earlier in the same worker may have
    left Playwright's loop running in this one, and Prefect's sync calls then return coroutines."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


@pytest.fixture(scope="module", autouse=True)
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


def test_prefect_yaml_deploys_both_schedules():
    in_fresh_thread(_deploys_both_schedules)


def _deploys_both_schedules():
    import prefect.settings
    from prefect.client.orchestration import get_client

    env = {**os.environ, "PREFECT_API_URL": prefect.settings.PREFECT_API_URL.value()}
    prefect = str(Path(sys.executable).with_name("prefect"))
    subprocess.run([prefect, "work-pool", "create", "crm-dedup-pool", "--type", "process"], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=120)
    done = subprocess.run([prefect, "--no-prompt", "deploy", "--all"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    async def read():
        async with get_client() as client:
            return await client.read_deployments()

    deps = {d.name: d for d in asyncio.run(read())}
    assert {"nightly-dedup", "hourly-apply"} <= set(deps)
    crons = {name: [s.schedule.cron for s in deps[name].schedules] for name in ("nightly-dedup", "hourly-apply")}
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    for d in spec["deployments"]:
        assert crons[d["name"]] == [s["cron"] for s in d["schedules"]]
    assert deps["nightly-dedup"].work_pool_name == "crm-dedup-pool"
    assert deps["nightly-dedup"].parameters["incremental"] is False  # full runs unless a steward sets it


def test_served_nightly_dedup_is_incremental_when_asked():
    in_fresh_thread(_served_nightly_is_incremental_when_asked)


def _served_nightly_is_incremental_when_asked():
    from pipelines.deployments import deployments

    assert [d.parameters.get("incremental") for d in deployments("sqlite:///x.db")] == [False, None]
    nightly, _apply = deployments("sqlite:///x.db", incremental=True)
    assert nightly.name == "nightly-dedup" and nightly.parameters["incremental"] is True


def test_served_deployment_runs_the_dedup_flow(tmp_path):
    in_fresh_thread(lambda: _served_deployment_runs(tmp_path))


def _served_deployment_runs(tmp_path):
    from prefect.deployments import run_deployment
    from prefect.runner import Runner

    from crm.demo import DemoSizes, generate_demo
    from crm.store import Store
    from pipelines.deployments import deployments

    store = Store(f"sqlite:///{tmp_path}/crm.db")
    store.migrate()
    generate_demo(store, DemoSizes(contacts=200, companies=60, leads=60, managers=2), seed=2)
    settings = tmp_path / "s.yaml"
    settings.write_text(yaml.safe_dump({"match": {"random_pairs": 50_000},
                                        "pipeline": {"runs_dir": str(tmp_path / "runs")}}))
    runner = Runner(name="test-runner")
    for dep in deployments(store.url, str(settings)):
        dep.name = f"served-{dep.name}"  # prefect.yaml's deployments of the same names live on this server too
        runner.add_deployment(dep)
    flow_run = run_deployment("dedup/served-nightly-dedup", timeout=0)
    asyncio.run(runner.start(run_once=True))
    from prefect.client.orchestration import get_client

    async def state():
        async with get_client() as client:
            return (await client.read_flow_run(flow_run.id)).state

    assert asyncio.run(state()).is_completed()
    assert list((tmp_path / "runs").iterdir())
