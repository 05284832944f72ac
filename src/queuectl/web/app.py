"""The dashboard: a Starlette app with Jinja2 pages that refresh themselves from JSON.

Every request opens the queue, reads with short autocommit statements (no snapshot is held
across requests, so workers are never blocked by a page left open), and closes it. Handlers are
plain functions: Starlette runs them in its thread pool, so a slow database read does not stall
the event loop, and each thread has its own connection.
"""

from __future__ import annotations

import json
import os
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from queuectl.errors import InputError, JobNotFound, QueueError
from queuectl.web import views
from queuectl.web.security import COOKIE, Guard

HERE = os.path.dirname(__file__)
PUBLIC = ("/login", "/static/")


def create_app(db: str | None, token: str) -> Starlette:
    guard = Guard(token)
    # autoescape on for every template: a job's command or output is shown as text, never
    # markup, whatever it contains.
    env = Environment(loader=FileSystemLoader(os.path.join(HERE, "templates")),
                      autoescape=select_autoescape(default=True, default_for_string=True))

    def page(request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        html = env.get_template(name).render(request=request, csrf=guard.csrf, **context)
        return HTMLResponse(html, status_code=status)

    def read(fn, *args):
        with views.open_queue(db) as queue:
            return fn(queue, *args)

    # -- pages --------------------------------------------------------------------------------

    def overview(request: Request) -> Response:
        return page(request, "overview.html", data=read(views.overview))

    def jobs(request: Request) -> Response:
        filters = views.job_filters(request.query_params)
        return page(request, "jobs.html", data=read(views.jobs, filters), filters=filters,
                    states=views.STATES)

    def job(request: Request) -> Response:
        return page(request, "job.html", data=read(views.job, request.path_params["job_id"]))

    def dlq(request: Request) -> Response:
        return page(request, "dlq.html", data=read(views.dlq))

    def workers(request: Request) -> Response:
        return page(request, "workers.html", data=read(views.workers))

    def login(request: Request) -> Response:
        return page(request, "login.html", error=None)

    async def login_post(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        if not guard.token_ok(form.get("token", [""])[0] or None):
            return page(request, "login.html", status=403, error="wrong token")
        return _logged_in(RedirectResponse("/", status_code=303), guard)

    # -- JSON: what the pages poll, and the actions -------------------------------------------

    def api(fn):
        def endpoint(request: Request) -> Response:
            return JSONResponse(read(fn, *_api_args(request)))
        return endpoint

    def _api_args(request: Request) -> tuple:
        if "job_id" in request.path_params:
            return (request.path_params["job_id"],)
        if request.url.path == "/api/jobs":
            return (views.job_filters(request.query_params),)
        return ()

    async def dlq_retry(request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise InputError("the body must be JSON") from None
        if not isinstance(body, dict):
            raise InputError("the body must be a JSON object")
        return JSONResponse(await _in_thread(lambda: read(views.dlq_retry, body)))

    async def dlq_purge(request: Request) -> Response:
        return JSONResponse(await _in_thread(lambda: read(views.dlq_purge)))

    def metrics(request: Request) -> Response:
        from queuectl.metrics import exposition

        return PlainTextResponse(exposition(lambda: views.open_queue(db)).decode(),
                                 media_type="text/plain; version=0.0.4")

    # -- errors -------------------------------------------------------------------------------

    def _error(request: Request, status: int, text: str) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": text}, status_code=status)
        return page(request, "error.html", status=status, message=text)

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(request, 404, str(exc))

    async def bad_input(request: Request, exc: Exception) -> Response:
        return _error(request, 400, str(exc))

    async def refused(request: Request, exc: Exception) -> Response:
        return _error(request, 409, str(exc))

    routes = [
        Route("/", overview),
        Route("/jobs", jobs),
        Route("/jobs/{job_id:path}", job),
        Route("/dlq", dlq),
        Route("/workers", workers),
        Route("/login", login, methods=["GET"]),
        Route("/login", login_post, methods=["POST"]),
        Route("/metrics", metrics),
        Route("/api/overview", api(views.overview)),
        Route("/api/jobs", api(views.jobs)),
        Route("/api/jobs/{job_id:path}", api(views.job)),
        Route("/api/dlq", api(views.dlq)),
        Route("/api/workers", api(views.workers)),
        Route("/api/dlq/retry", dlq_retry, methods=["POST"]),
        Route("/api/dlq/purge", dlq_purge, methods=["POST"]),
        Mount("/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=_gatekeeper(guard))],
        exception_handlers={JobNotFound: not_found, InputError: bad_input,
                            QueueError: refused},
    )


async def _in_thread(fn):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn)


def _logged_in(response: Response, guard: Guard) -> Response:
    response.set_cookie(COOKIE, guard.session, httponly=True, samesite="strict", path="/")
    return response


def _gatekeeper(guard: Guard):
    """Every request but the login page needs the token (or its cookie); every POST must
    also pass the cross-site checks (security.py)."""

    async def dispatch(request: Request, call_next) -> Response:
        path = request.url.path
        given = request.query_params.get("token")
        if request.method == "GET" and given is not None and guard.token_ok(given):
            # The URL printed at start: log in, then drop the token from the address bar.
            rest = {k: v for k, v in request.query_params.items() if k != "token"}
            target = path + ("?" + urlencode(rest) if rest else "")
            return _logged_in(RedirectResponse(target, status_code=303), guard)
        if path.startswith(PUBLIC):
            return await call_next(request)
        if not guard.authenticated(request):
            if request.method == "GET" and not path.startswith(("/api/", "/metrics")):
                return RedirectResponse("/login", status_code=303)
            return JSONResponse({"error": "token required"}, status_code=401)
        if request.method not in ("GET", "HEAD"):
            allowed, why = guard.may_change(request)
            if not allowed:
                return JSONResponse({"error": why}, status_code=403)
        response = await call_next(request)
        response.headers.setdefault("X-Frame-Options", "DENY")  # no clickjacking of buttons
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; frame-ancestors 'none'")
        return response

    return dispatch
