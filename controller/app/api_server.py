"""Serve the control API (controller.app.api) on the hub: eventlet's WSGI server on a listener
that does not share its port (no SO_REUSEPORT: a second controller on the same port must fail,
not split the callers)."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("otseg.app")


def serve_api(app: Any, host: str, port: int, token_generated: bool) -> None:
    import eventlet  # noqa: PLC0415  (the eventlet hub is in force: see hub_compat)
    import eventlet.wsgi  # noqa: PLC0415

    listener = eventlet.listen((host, port), reuse_port=False)
    log.info("control API on http://%s:%d (token %s)", host, port,
             "generated in the state directory: changes need it, local reads do not"
             if token_generated else "configured: required for every call")
    eventlet.wsgi.server(listener, app, log_output=False)
