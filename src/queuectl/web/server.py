"""`queuectl dashboard`: decide the token, refuse an unsafe bind, run uvicorn."""

from __future__ import annotations

import os
import sys

from queuectl.errors import InputError
from queuectl.web.security import LOOPBACK, new_token


def cmd_dashboard(args) -> int:
    import uvicorn

    from queuectl.store import resolve_target
    from queuectl.web.app import create_app

    token = args.token or os.environ.get("QUEUECTL_DASHBOARD_TOKEN") or None
    if token is None and args.host not in LOOPBACK:
        raise InputError(f"binding to {args.host} exposes the queue beyond this machine: give "
                         "--token T (or $QUEUECTL_DASHBOARD_TOKEN)")
    if token is not None and len(token) < 8:
        raise InputError("the dashboard token must be at least 8 characters")
    chosen = token is not None
    token = token or new_token()  # local use: a fresh token each start, given in the URL
    app = create_app(resolve_target(getattr(args, "db", None)), token)
    host = f"[{args.host}]" if ":" in args.host else args.host
    shown = "" if chosen else f"/?token={token}"
    sys.stderr.write(f"queuectl: dashboard on http://{host}:{args.port}{shown}\n")
    sys.stderr.flush()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                server_header=False)
    return 0
