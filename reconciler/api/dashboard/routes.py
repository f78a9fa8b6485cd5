"""The dashboard's routes (``GET /`` and the pages under it, ``/static/``): server-rendered
HTML that works without JavaScript, over the engine's read models.

Pages: Upcoming & Recurring (``/``), the timeline (``/timeline``), run history (``/runs``), a
run with its live log (``/runs/{id}``, the log fragment ``/runs/{id}/log``), a schedule with
its slot ledger (``/schedules/{name}``), the approval queue (``/approvals``, acting through
:mod:`reconciler.engine.approving`), drift per server (``/drift``) and the reconcile status
(``/status``). Sign-in and CSRF: :mod:`reconciler.api.dashboard.session`. Every answer
carries a strict Content-Security-Policy (``default-src 'self'``; no inline script or style).
Called by :func:`reconciler.api.app.create_app` through ``ROUTERS``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, get_args
from urllib.parse import parse_qs, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from reconciler.api.context import ApiContext
from reconciler.api.dashboard import render, session
from reconciler.engine.keys import authenticate, may_read
from reconciler.errors import UsageError
from reconciler.stores.base import FINAL_STATUSES, ApiKey, RunStatus, RunTrigger

log = logging.getLogger("reconciler.http")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
PAGE = 50
"""Rows per page of the long lists (schedules, timeline lanes, runs)."""
LANES = 30
"""Schedules per page of the timeline (one row each)."""
LOG_TAIL = 256 * 1024
"""A run page starts its log this many bytes before the end (older output: the API)."""
LOG_CHUNK = 64 * 1024
"""At most this much log text per poll of the fragment endpoint."""
STATES = ("active", "paused", "awaiting-approval", "denied", "disabled")
STATIC = {
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
}


FORM_LIMIT = 64 * 1024
"""Form bodies larger than this are refused (413): the dashboard's forms are a few fields."""
FORM_TOO_LARGE = "The form is too large."


class _NotSignedIn(Exception):
    pass


def routes(ctx: ApiContext) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    env = render.environment()
    static = {name: (render.HERE / "static" / name).read_bytes() for name in STATIC}

    def page(
        request: Request,
        template: str,
        viewer: ApiKey | None,
        status_code: int = 200,
        **values: Any,
    ) -> HTMLResponse:
        secret = session.session_secret(request)
        html = env.get_template(template).render(
            viewer=viewer,
            csrf=session.csrf_token(secret) if secret and viewer else "",
            can_act=viewer is not None and _may_act(viewer),
            path=request.url.path,
            now=ctx.clock.now(),
            relative=render.relative,
            **values,
        )
        return HTMLResponse(html, status_code, headers=SECURITY_HEADERS)

    def viewer_of(request: Request) -> ApiKey:
        key = authenticate(ctx.store(), session.session_secret(request))
        if key is None or not may_read(key):
            raise _NotSignedIn
        return key

    def to_signin(request: Request) -> RedirectResponse:
        target = request.url.path
        if request.url.query and request.method == "GET":
            target += "?" + request.url.query
        return RedirectResponse(
            "/signin?" + urlencode({"next": target}), 303, headers=SECURITY_HEADERS
        )

    def signed_in(request: Request) -> ApiKey | RedirectResponse:
        try:
            return viewer_of(request)
        except _NotSignedIn:
            return to_signin(request)

    def refuse(request: Request, viewer: ApiKey | None, status: int, message: str) -> Response:
        return page(request, "error.html", viewer, status, message=message)

    # ---------------------------------------------------------------------------- static

    @router.get("/static/{name}")
    def static_file(name: str) -> Response:
        if name not in static:
            return Response("not found", 404, headers=SECURITY_HEADERS)
        return Response(
            static[name],
            media_type=STATIC[name],
            headers={**SECURITY_HEADERS, "Cache-Control": "public, max-age=3600"},
        )

    # ---------------------------------------------------------------------------- sign-in

    def sign_in_with(request: Request, secret: str, target: str) -> Response:
        key = authenticate(ctx.store(), secret)
        if key is None or not may_read(key):
            log.info("dashboard sign-in refused")
            return page(
                request,
                "signin.html",
                None,
                401,
                error="That API key is not valid (unknown, revoked, or without read scope).",
                next=target,
            )
        log.info("dashboard sign-in: API key %s", key.name)
        response = RedirectResponse(session.local_path(target), 303, headers=SECURITY_HEADERS)
        session.set_session(response, request, secret)
        return response

    @router.get("/signin")
    def signin_form(request: Request, next: str = "/") -> Response:
        return page(request, "signin.html", None, error=None, next=session.local_path(next))

    @router.post("/signin")
    async def signin(request: Request) -> Response:
        form = await _form(request)
        if form is None:
            return await run_in_threadpool(refuse, request, None, 413, FORM_TOO_LARGE)
        if not session.same_origin(request):
            return await run_in_threadpool(
                refuse, request, None, 403, "This form must be sent from the dashboard itself."
            )
        key, target = form.get("key", "").strip(), form.get("next", "/")
        return await run_in_threadpool(sign_in_with, request, key, target)

    @router.post("/signout")
    async def signout(request: Request) -> Response:
        form = await _form(request) or {}
        csrf = form.get("csrf", "")
        secret = session.session_secret(request)
        if secret and (not session.same_origin(request) or not session.csrf_ok(secret, csrf)):
            return refuse(request, None, 403, "Sign-out refused: the form's token is missing.")
        response = RedirectResponse("/signin", 303, headers=SECURITY_HEADERS)
        session.clear_session(response, request)
        return response

    # ---------------------------------------------------------------------------- pages

    @router.get("/")
    def upcoming(
        request: Request,
        key: str | None = None,
        after: str | None = None,
        state: str | None = None,
        q: str | None = None,
        system: bool = False,
    ) -> Response:
        if key is not None:  # /?key=SECRET: sign in, then drop the key from the address bar
            return sign_in_with(request, key, "/")
        viewer = signed_in(request)
        if isinstance(viewer, Response):
            return viewer
        if state is not None and state not in STATES:
            return refuse(request, viewer, 400, f"unknown state {state!r}")
        from reconciler.engine.browsing import schedule_page

        store = ctx.store()
        now = ctx.clock.now()
        found = schedule_page(
            store,
            now,
            after=after or None,
            limit=PAGE,
            count=3,
            state=state,  # type: ignore[arg-type]
            contains=(q or "").strip().lower() or None,
        )
        jobs = store.list_system() if system else []
        return page(
            request,
            "upcoming.html",
            viewer,
            found=found,
            jobs=jobs,
            system=system,
            state=state,
            q=q or "",
            states=STATES,
            timedelta=timedelta,
            next_link=_link(
                "/", {"after": found.next_after, "state": state, "q": q, "system": system}
            )
            if found.next_after
            else None,
            first_link=_link("/", {"state": state, "q": q, "system": system}) if after else None,
        )

    @router.get("/timeline")
    def timeline(request: Request, window: str = "24h", after: str | None = None) -> Response:
        viewer = signed_in(request)
        if isinstance(viewer, Response):
            return viewer
        span = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}.get(window)
        if span is None:
            return refuse(request, viewer, 400, "window must be 24h or 7d")
        from reconciler.engine.browsing import default_timezone
        from reconciler.engine.browsing import timeline as lanes_of

        store = ctx.store()
        now = ctx.clock.now()
        rows, next_after = lanes_of(store, now, now + span, after=after or None, limit=LANES)
        zone = default_timezone(store)
        svg = render.timeline_svg(
            [render.Lane(r.schedule, r.fires, r.capped) for r in rows], now, now + span, zone
        )
        local_now = now.astimezone(ZoneInfo(zone))
        return page(
            request,
            "timeline.html",
            viewer,
            svg=svg,
            rows=rows,
            window=window,
            zone=zone,
            local_now=local_now,
            fires=sum(len(r.fires) for r in rows),
            next_link=_link("/timeline", {"window": window, "after": next_after})
            if next_after
            else None,
            first_link=_link("/timeline", {"window": window}) if after else None,
        )

    @router.get("/runs")
    def runs(
        request: Request,
        schedule: str | None = None,
        template: str | None = None,
        status: str | None = None,
        trigger: str | None = None,
        before: int | None = None,
    ) -> Response:
        viewer = signed_in(request)
        if isinstance(viewer, Response):
            return viewer
        filters = {
            "schedule": (schedule or "").strip() or None,
            "template": (template or "").strip() or None,
            "status": status or None,
            "trigger": trigger or None,
        }
        if filters["status"] is not None and filters["status"] not in get_args(RunStatus):
            return refuse(request, viewer, 400, f"unknown status {status!r}")
        if filters["trigger"] is not None and filters["trigger"] not in get_args(RunTrigger):
            return refuse(request, viewer, 400, f"unknown trigger {trigger!r}")
        found = ctx.store().page_runs(
            schedule=filters["schedule"],
            template=filters["template"],
            status=filters["status"],  # type: ignore[arg-type]
            trigger=filters["trigger"],  # type: ignore[arg-type]
            before=before,
            limit=PAGE + 1,
        )
        more = len(found) > PAGE
        found = found[:PAGE]
        return page(
            request,
            "runs.html",
            viewer,
            runs=found,
            filters=filters,
            statuses=get_args(RunStatus),
            triggers=get_args(RunTrigger),
            next_link=_link("/runs", {**filters, "before": found[-1].id}) if more else None,
            first_link=_link("/runs", filters) if before else None,
        )

    @router.get("/runs/{run_id}")
    def run_page(request: Request, run_id: int) -> Response:
        viewer = signed_in(request)
        if isinstance(viewer, Response):
            return viewer
        store = ctx.store()
        run = store.get_run(run_id)
        if run is None:
            return refuse(request, viewer, 404, f"There is no run {run_id}.")
        start = max(0, run.log_size - LOG_TAIL)
        text = store.read_log(run_id, start, LOG_TAIL + 1024)
        return page(
            request,
            "run.html",
            viewer,
            run=run,
            log_text=text.text,
            log_start=start,
            log_next=text.next_offset,
            log_truncated=text.truncated,
            final=run.status in FINAL_STATUSES,
        )

    @router.get("/runs/{run_id}/log")
    def run_log(request: Request, run_id: int, offset: Annotated[int, Query(ge=0)] = 0) -> Response:
        try:
            viewer_of(request)
        except _NotSignedIn:
            return JSONResponse(
                {"error": {"code": "unauthorized", "message": "sign in again"}},
                401,
                headers=SECURITY_HEADERS,
            )
        store = ctx.store()
        run = store.get_run(run_id)
        if run is None:
            return JSONResponse(
                {"error": {"code": "not-found", "message": f"there is no run {run_id}"}},
                404,
                headers=SECURITY_HEADERS,
            )
        part = store.read_log(run_id, offset, LOG_CHUNK)
        return JSONResponse(
            {
                "text": part.text,
                "next_offset": part.next_offset,
                "status": run.status,
                "final": run.status in FINAL_STATUSES and part.next_offset >= run.log_size,
            },
            headers=SECURITY_HEADERS,
        )

    @router.get("/schedules/{name}")
    def schedule_page(
        request: Request, name: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> Response:
        viewer = signed_in(request)
        if isinstance(viewer, Response):
            return viewer
        from reconciler.engine.browsing import schedule_detail, schedule_ledger, schedule_row

        store = ctx.store()
        detail = schedule_detail(store, name)
        if detail is None:
            return refuse(request, viewer, 404, f"No schedule {name!r} is applied.")
        row = schedule_row(store, ctx.clock.now(), name, 5)
        ledger = schedule_ledger(store, name, None, limit)
        return page(
            request,
            "schedule.html",
            viewer,
            detail=detail,
            row=row,
            ledger=ledger,
            limit=limit,
            more_link=_link(f"/schedules/{name}", {"limit": min(1000, limit * 5)})
            if len(ledger) >= limit and limit < 1000
            else None,
            recent=store.page_runs(schedule=name, limit=10),
        )

    @router.get("/drift")
    def drift(request: Request) -> Response:
        viewer = signed_in(request)
        if isinstance(viewer, Response):
            return viewer
        records = ctx.store().list_drift(latest=True)
        servers: dict[str, list[Any]] = {}
        for d in records:
            servers.setdefault(d.server, []).append(d)
        return page(request, "drift.html", viewer, servers=servers)

    @router.get("/status")
    def status(request: Request) -> Response:
        viewer = signed_in(request)
        if isinstance(viewer, Response):
            return viewer
        from reconciler.engine.status import status_json

        store = ctx.store()
        info = status_json(store, ctx.clock.now())
        return page(
            request,
            "status.html",
            viewer,
            info=info,
            store_info=store.info(),
            history=store.history(10),
            system=store.list_system(),
            outbox=store.notification_counts(),
            failed=store.list_notifications("failed", 20),
        )

    # ---------------------------------------------------------------------------- approvals

    @router.get("/approvals")
    def approvals(
        request: Request,
        confirm: str | None = None,
        after: str | None = None,
        show_all: Annotated[bool, Query(alias="all")] = False,
        done: str | None = None,
    ) -> Response:
        viewer = signed_in(request)
        if isinstance(viewer, Response):
            return viewer
        from reconciler.engine.browsing import approval_page

        found = approval_page(
            ctx.store(), ctx.clock.now(), after=after or None, limit=PAGE, waiting=not show_all
        )
        return page(
            request,
            "approvals.html",
            viewer,
            queue=found.entries,
            due=found.due,
            confirm=confirm,
            notice=done,
            all=show_all,
            next_link=_link("/approvals", {"after": found.next_after, "all": show_all})
            if found.next_after
            else None,
            first_link=_link("/approvals", {"all": show_all}) if after else None,
        )

    @router.post("/approvals/{name}/{action}")
    async def act(request: Request, name: str, action: str) -> Response:
        form = await _form(request)
        if form is None:
            return await run_in_threadpool(refuse, request, None, 413, FORM_TOO_LARGE)
        return await run_in_threadpool(
            decide_on,
            request,
            name,
            action,
            form.get("csrf", ""),
            form.get("force", ""),
            form.get("reason", ""),
        )

    def decide_on(
        request: Request, name: str, action: str, csrf: str, force: str, reason: str
    ) -> Response:
        secret = session.session_secret(request)
        try:
            viewer = viewer_of(request)
        except _NotSignedIn:
            return refuse(request, None, 403, "Sign in with an approve key to act.")
        assert secret is not None
        if not session.same_origin(request) or not session.csrf_ok(secret, csrf):
            log.info("dashboard POST refused: cross-site or without its token")
            return refuse(
                request, viewer, 403, "Refused: the form's token is missing or wrong (CSRF)."
            )
        if not _may_act(viewer):
            return refuse(
                request,
                viewer,
                403,
                f"API key {viewer.name} may only look: approving, denying and dry runs need "
                "an approve key.",
            )
        if action not in ("approve", "deny", "dry-run"):
            return refuse(request, viewer, 404, f"unknown action {action!r}")
        from reconciler.engine import approving
        from reconciler.engine.approving import Verdict

        store = ctx.store()
        now = ctx.clock.now()
        user = str(viewer.user)
        try:
            if action == "dry-run":
                run = approving.dry_run(store, name, "api", f"api-key:{viewer.name}", now)
                ctx.wake_workers()
                return RedirectResponse(f"/runs/{run.id}", 303, headers=SECURITY_HEADERS)
            verdict: Verdict = "approve" if action == "approve" else "deny"
            rec = store.get_object("Schedule", name)
            if (
                verdict == "approve"
                and force != "yes"
                and rec is not None
                and rec.state == "awaiting-approval"
                and approving.past_due_slot(store, rec, now) is not None
            ):
                return RedirectResponse(
                    _link("/approvals", {"confirm": name, "all": True}) + f"#{name}",
                    303,
                    headers=SECURITY_HEADERS,
                )
            result = approving.decide(
                store,
                name,
                user,
                verdict,
                "api",
                now,
                force=force == "yes",
                reason=reason.strip() or None,
            )
        except UsageError as e:
            return refuse(request, viewer, 409, str(e))
        return RedirectResponse(
            _link("/approvals", {"done": result.message, "all": True}),
            303,
            headers=SECURITY_HEADERS,
        )

    return router


async def _form(request: Request) -> dict[str, str] | None:
    """The fields of an ``application/x-www-form-urlencoded`` body (the first value of each);
    None when it is larger than :data:`FORM_LIMIT`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > FORM_LIMIT:
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            return None
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items() if v}


def _may_act(key: ApiKey) -> bool:
    return "approve" in key.scopes and bool(key.user)


def _link(path: str, params: Mapping[str, object]) -> str:
    """``path`` with the non-empty ``params`` as its query (never a key: callers pass
    filters and cursors only)."""
    kept = {k: str(v) for k, v in params.items() if v not in (None, "", False)}
    kept = {k: ("1" if v == "True" else v) for k, v in kept.items()}
    return path + ("?" + urlencode(kept) if kept else "")
