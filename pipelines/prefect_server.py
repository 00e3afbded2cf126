"""Prefect's temporary API server process, as ``python -m uvicorn`` runs it, started by
pipelines.prefect_api: run as ``python -m pipelines.prefect_server UVICORN-ARGS``, so that the
package's start-up settings (pipelines/__init__.py) apply to the server too."""

from uvicorn.main import main

if __name__ == "__main__":
    main()
