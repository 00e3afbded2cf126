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


def _entrypoints() -> list[str]:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return sorted({d["entrypoint"] for d in spec["deployments"]})


def test_flows_loaded_from_their_entrypoints_as_prefect_does_still_find_dask():
    """A worker or `prefect deploy` loads a flow by its entrypoint, which puts the flows' folder
    (pipelines/) first on sys.path: a module there named like a package (it was distributed.py) hid
    Dask's `distributed`, and a Dask run of a served deployment failed to import it."""
    script = ("import sys\n"
              "from prefect.flows import load_flow_from_entrypoint\n"
              "for entrypoint in sys.argv[1:]:\n"
              "    load_flow_from_entrypoint(entrypoint)\n"
              "import distributed.deploy, prefect_dask\n"
              "print(distributed.__file__)\n")
    done = subprocess.run([sys.executable, "-c", script, *[str(ROOT / e) for e in _entrypoints()]], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "site-packages" in done.stdout and "pipelines" not in done.stdout, done.stdout


def test_no_module_beside_the_flows_has_the_name_of_an_installed_package():
    """Every module of the entrypoints' folder is importable by its bare name in a flow run (see
    above): none may share a name with the standard library or an installed package."""
    import pkgutil

    folders = {(ROOT / e.split(":")[0]).parent.resolve() for e in _entrypoints()}
    elsewhere = [p for p in sys.path if p and Path(p).resolve() not in folders | {ROOT.resolve()}]
    installed = {m.name for m in pkgutil.iter_modules(elsewhere)} | set(sys.stdlib_module_names)
    assert "distributed" in installed and "yaml" in installed  # the check sees the installed packages
    ours = {m.name for m in pkgutil.iter_modules([str(f) for f in folders])}
    assert ours, folders
    assert sorted(ours & installed) == []
