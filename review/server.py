"""Run the review app with uvicorn (`crm-dedup review`)."""

from __future__ import annotations

import logging

import uvicorn

from merge_rules.settings import MergeSettings
from review.app import create_app

log = logging.getLogger(__name__)


def serve(db_url: str | None, host: str = "127.0.0.1", port: int = 8000, *, secret_key: str | None = None,
          merge_settings: MergeSettings | None = None, log_level: str = "info") -> None:
    """Serve the review page until stopped (Ctrl+C). Binds 127.0.0.1 unless told otherwise."""
    app = create_app(db_url, secret_key, merge_settings=merge_settings)
    log.info("review page on http://%s:%s/ (database %s)", host, port, app.state.store.display_url)
    uvicorn.run(app, host=host, port=port, log_level=log_level, proxy_headers=False, server_header=False)
