"""The schedules of prefect.yaml, served from this machine with `crm-dedup serve` (no work pool needed)."""

from __future__ import annotations

from prefect import serve

from pipelines.flows import apply_flow, dedup_flow

NIGHTLY_DEDUP = "0 2 * * *"
HOURLY_APPLY = "5 * * * *"
TIMEZONE = "Europe/Moscow"


def deployments(db: str | None = None, settings_path: str | None = None, incremental: bool = False):
    """The two deployments, as RunnerDeployments (the same as prefect.yaml's)."""
    from prefect.schedules import Cron

    return [
        dedup_flow.to_deployment(name="nightly-dedup", schedule=Cron(NIGHTLY_DEDUP, timezone=TIMEZONE),
                                 parameters={"db": db, "settings_path": settings_path, "incremental": incremental}),
        apply_flow.to_deployment(name="hourly-apply", schedule=Cron(HOURLY_APPLY, timezone=TIMEZONE),
                                 parameters={"db": db, "settings_path": settings_path}),
    ]


def serve_forever(db: str | None = None, settings_path: str | None = None, incremental: bool = False) -> None:
    """Serve both deployments until Ctrl-C or SIGTERM, on the Prefect API this process uses: inside
    pipelines.prefect_api.early_server, the server it started (else prefect.serve would start a
    temporary server of its own, and each flow run, with no API URL to inherit, another one). The
    command prints the API URL and how to trigger a run; Prefect's message would name no server."""
    serve(*deployments(db, settings_path, incremental), print_starting_message=False)
