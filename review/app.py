"""The review web application: sign in, list duplicate groups, review one, merge, skip (and withdraw
a "not duplicates" mark), undo.

``create_app(db_url)`` builds it; ``review.server.serve`` runs it with uvicorn on 127.0.0.1. Pages are
rendered on the server with Jinja2 (autoescaped); the only script is a few lines in static/review.js.
Every rule of who sees what is checked here on the server, and again by the merge engine.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import AfterValidator
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware

from crm import schema
from crm.store import Store
from merge_rules.history import merge_history
from merge_rules.plan import MergePlan
from merge_rules.settings import MergeSettings, field_kinds
from review import actions, auth, queries, views
from review.queries import LISTS, BadRequest, Filters, is_admin
from review.security import (SESSION_COOKIE, SESSION_MAX_AGE, SIGNED_IN_COOKIE, SIGNED_IN_MAX_AGE, Flashes,
                             PlanSigner, SecurityHeaders, csrf_ok, csrf_token)

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SECRET_ENV = "CRM_DEDUP_REVIEW_SECRET"
HISTORY_PAGE = 50
# An integer from the URL (path or query): range-checked by queries.check_int, as the form values are
# by queries.parse_int, so that a huge one is a 400 naming it rather than the database's overflow (a 500)
Int = Annotated[int, AfterValidator(queries.check_int)]


class SignInRequired(Exception):
    def __init__(self, ended: bool = False):
        super().__init__()
        self.ended = ended  # the session was refused (signed out elsewhere, a new password), not absent


SESSION_ENDED = "You were signed out: your session ended. Sign in again to go on."
SIGNED_OUT = "You are signed out. Sign in again to go on."


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no //host) may be a place to go after signing in."""
    if not target or not target.startswith("/") or target.startswith("//") or target.startswith("/\\"):
        return "/"
    return target


def _url(path: str, params: dict[str, Any] | None = None) -> str:
    params = {k: v for k, v in (params or {}).items() if v not in (None, "")}
    return path + ("?" + urlencode(params) if params else "")


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def create_app(db_url: str | None, secret_key: str | None = None, *,
               merge_settings: MergeSettings | None = None) -> FastAPI:
    """The review app on the CRM database at ``db_url`` (default: $CRM_DEDUP_DB or the SQLite default).

    ``secret_key`` signs the session cookies and plans; without one, $CRM_DEDUP_REVIEW_SECRET, else a
    random key (sessions then end when the server restarts)."""
    store = Store(db_url, must_exist=True)
    store.check_schema()
    secret_key = secret_key or os.environ.get(SECRET_ENV)
    if not secret_key:
        secret_key = secrets.token_urlsafe(32)
        log.info("no secret key given (%s): sessions last until the server stops", SECRET_ENV)
    settings = merge_settings or MergeSettings.load()
    signer = PlanSigner(secret_key)
    flashes = Flashes()
    flash = flashes.add
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(url=_url, fmt=views.fmt, LISTS=LISTS, TIERS=queries.TIERS,
                                 STATUSES=queries.STATUSES, RULE_WORDS=views.RULE_WORDS,
                                 display_name=queries.display_name, SEARCH_LIMIT=queries.SEARCH_LIMIT)

    app = FastAPI(title="crm-dedup review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store
    app.state.settings = settings
    app.add_middleware(SessionMiddleware, secret_key=secret_key, session_cookie=SESSION_COOKIE,
                       max_age=SESSION_MAX_AGE, same_site="lax", https_only=False)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    # -- helpers ------------------------------------------------------------------------------

    def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
        ctx = {"user": getattr(request.state, "user", None), "csrf": csrf_token(request),
               "flashes": flashes.pop(request), **context}
        return templates.TemplateResponse(request, name, ctx, status_code=status)

    def current_user(request: Request) -> dict:
        """The signed-in user, checked against the database on every request."""
        uid = request.session.get("uid")
        user = None
        if isinstance(uid, int):
            with store.engine.connect() as conn:
                user = queries.load_user(conn, uid)
            if user is not None and request.session.get("pv") != auth.password_version(user["password_hash"]):
                user = None  # the password changed since this session signed in
            elif user is not None and not auth.session_current(user["signed_out_at"], request.session.get("at")):
                user = None  # the user signed out since (this cookie may be a copy of the one they had)
        if user is None:
            request.session.pop("uid", None)
            raise SignInRequired(ended=isinstance(uid, int))
        user.pop("password_hash", None)
        user.pop("signed_out_at", None)
        request.state.user = user
        return user

    async def form_data(request: Request) -> dict[str, Any]:
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}

    def checked_form(request: Request, form: dict = Depends(form_data), user: dict = Depends(current_user)) -> dict:
        if not csrf_ok(request, form):
            raise HTTPException(403, "The form's security token is missing or out of date. "
                                     "Go back, reload the page and try again.")
        return form

    def group_for(conn, group_id: str, user: dict) -> dict:
        """The group, or 404 when it does not exist or the user may not see it (no hint which)."""
        group = queries.get_group(conn, group_id)
        if group is None or not queries.can_see_group(user, group):
            raise HTTPException(404, "There is no such group, or it is not one of yours.")
        return group

    def group_url(group_id: str, primary: int | None = None, choices: dict[str, int] | None = None,
                  listq: dict[str, str] | None = None) -> str:
        """The group's page; ``listq``: the filters of the list the person came from (list_query)."""
        params: dict[str, Any] = {"primary": primary}
        params.update({f"c.{k}": v for k, v in (choices or {}).items()})
        params.update(listq or {})
        return _url(f"/group/{quote(group_id, safe='')}", params)

    # -- errors -------------------------------------------------------------------------------

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired):
        if request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            response = _see_other(_url("/signin", {"next": target}))
            if exc.ended or request.cookies.get(SIGNED_IN_COOKIE):
                # a session that ended (signed out elsewhere, timed out): say so above the sign-in form
                flash(request, SESSION_ENDED)
                response.delete_cookie(SIGNED_IN_COOKIE)  # (told once)
            return response
        return render(request, "error.html", {"code": 403, "message": "Sign in first."}, 403)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        if exc.status_code == 405:
            return Response("Method not allowed", status_code=405)
        return render(request, "error.html", {"code": exc.status_code, "message": exc.detail}, exc.status_code)

    @app.exception_handler(BadRequest)
    async def _bad_request(request: Request, exc: BadRequest):
        return render(request, "error.html", {"code": 400, "message": str(exc)}, 400)

    @app.exception_handler(RequestValidationError)
    async def _bad_parameter(request: Request, exc: RequestValidationError):
        # (a range check's message is ours, queries.check_int: without pydantic's "Value error, " before it)
        where = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ())[1:]) or 'parameter'}: "
                          f"{str(e.get('msg')).removeprefix('Value error, ')}" for e in exc.errors())
        return render(request, "error.html", {"code": 400, "message": f"Bad parameter ({where})."}, 400)

    # -- signing in ---------------------------------------------------------------------------

    @app.get("/signin", response_class=HTMLResponse)
    def signin_page(request: Request, next: str | None = None):
        return render(request, "signin.html", {"next": _safe_next(next), "email": ""})

    @app.post("/signin", response_class=HTMLResponse)
    def signin(request: Request, form: dict = Depends(form_data)):
        if not csrf_ok(request, form):
            flash(request, "The sign-in form was out of date; please try again.", "error")
            return _see_other(_url("/signin", {"next": form.get("next")}))
        email = (form.get("email") or "").strip()
        user = auth.authenticate(store, email, form.get("password") or "")
        if user is None:
            log.info("failed sign-in for %r", email)
            return render(request, "signin.html", {"next": _safe_next(form.get("next")), "email": email,
                                                   "error": "Wrong email or password."}, 401)
        request.session.clear()  # a new session (and CSRF token) for the signed-in user
        request.session.update(uid=user["id"], pv=auth.password_version(user["password_hash"]),
                               at=auth.session_start())
        csrf_token(request)
        log.info("user #%s signed in", user["id"])
        response = _see_other(_safe_next(form.get("next")))
        response.set_cookie(SIGNED_IN_COOKIE, "1", max_age=SIGNED_IN_MAX_AGE, httponly=True, samesite="lax")
        return response

    @app.post("/signout")
    def signout(request: Request, form: dict = Depends(checked_form)):
        uid = request.session.get("uid")
        if isinstance(uid, int):  # (every session of the user ends: a copy of this cookie is refused too)
            auth.sign_out_everywhere(store, uid)
        request.session.clear()
        flash(request, SIGNED_OUT)
        response = _see_other("/signin")
        response.delete_cookie(SIGNED_IN_COOKIE)  # (this sign-out is said here, not again later)
        return response

    # -- the groups list ----------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def home(user: dict = Depends(current_user)):
        return _see_other("/groups/contact")

    @app.get("/groups/{entity}", response_class=HTMLResponse)
    def groups_page(request: Request, entity: str, tier: str | None = None, manager: str | None = None,
                    run: str | None = None, status: str | None = None, after: str | None = None,
                    before: str | None = None, last: Int = 0, page: Int = 1, q: str | None = None,
                    user: dict = Depends(current_user)):
        if entity not in LISTS:
            raise HTTPException(404, f"There is no list {entity!r}.")
        f = Filters.parse(entity, tier, manager, run, status, q if entity != "lead_clients" else None)
        with store.engine.connect() as conn:
            people = queries.managers(conn) if is_admin(user) else [user]
            run_list = queries.runs(conn)
            if entity == "lead_clients":
                data = queries.lead_clients_page(conn, f, user, page)
                return render(request, "lead_clients.html", {"f": f, "entity": entity, "data": data,
                                                             "people": people, "runs": run_list})
            counts = queries.tier_counts(conn, f, user)
            bounds = counts.bounds(f.tier)
            total = counts.total(f.tier)
            pages = max(1, -(-total // queries.PAGE_SIZE))
            if bounds is None:  # nothing to list: no need to walk the index
                listing = {"rows": [], "has_prev": False, "has_next": False, "first": 0, "size": queries.PAGE_SIZE}
            else:  # (a typed ?page=N shows page N, or the last page when N is past it; the pager's links use cursors)
                listing = queries.list_groups(conn, f, user, after=after, before=before, last=bool(last),
                                              page=min(max(1, page), pages), bounds=bounds)
                if not listing["rows"] and (after or before):
                    # every row past the cursor went away since its link was made (merged, skipped):
                    # the last page that exists (or the first, going back), not an empty one
                    listing = queries.list_groups(conn, f, user, last=after is not None, bounds=bounds)
            rows = queries.decorate(conn, entity, listing["rows"])
        return render(request, "groups.html", {
            "f": f, "entity": entity, "rows": rows, "counts": counts.per_tier, "total": total, "listing": listing,
            "page": page, "pages": pages, "people": people, "runs": run_list})

    # -- one group ----------------------------------------------------------------------------

    def list_filters(params, entity: str) -> Filters | None:
        """The filters of the list the person came from (the list's links carry those that are not the
        list's defaults, and its page when past the first), for "leave for later"; None when the page
        was opened otherwise."""
        if not any(name in params for name in ("status", "tier", "manager", "run", "q", "page")):
            return None
        return Filters.parse(entity, params.get("tier"), params.get("manager"), params.get("run"),
                             params.get("status"), params.get("q"))

    def list_page(params) -> int | None:
        """The page of that list the person was on (its Review links carry it when past the first)."""
        page = queries.parse_int(params.get("page"), "page", "a page number")
        return page if page is not None and page > 1 else None

    def list_query(params, entity: str) -> dict[str, str]:
        """list_filters and list_page as query parameters: the group page's forms carry them, and every
        action's redirect keeps them, so that its link back to the list goes back to the same page (the
        list shows its last page when that one has gone) and "leave for later" still follows the list
        the person came from. Empty when the page was opened otherwise."""
        came = list_filters(params, entity)
        listq = came.query() if came else {}
        page = list_page(params)
        return {**listq, "page": str(page)} if page else listq  # (a page means a list: came is set)

    def next_or_list(conn, group: dict, user: dict, came: Filters | None, page: int | None) -> str:
        """Where to go on from a group: the next group of the list the person came from (its page keeping
        that list's filters, and the page of the list that group is on, so that going back to the list
        lands where the person got to), else that list at the page they were on."""
        f = came or Filters(group["entity_type"], status=group["status"])
        found = queries.next_group(conn, group, user, f)
        at = queries.page_of(found[1]) if found else (page or 1)
        listq = came.query() if came else {}
        if at > 1:  # (past the first page: the list is named, so that its page means something)
            listq = {**f.query(), "page": str(at)}
        return (_url(f"/group/{quote(found[0], safe='')}", listq) if found
                else _url(f"/groups/{group['entity_type']}", listq))

    @app.get("/group/{group_id}", response_class=HTMLResponse)
    def group_page(request: Request, group_id: str, primary: Int | None = None, user: dict = Depends(current_user)):
        with store.engine.connect() as conn:
            group = group_for(conn, group_id, user)
            listq = list_query(request.query_params, group["entity_type"])
            choices = views.parse_choices(request.query_params, group["entity_type"])
            view = views.build(store, conn, group, user, settings, primary=primary, choices=choices)
            merge = queries.merge_brief(conn, group["merge_id"]) if group.get("merge_id") else None
            lost = views.merge_lost_access(conn, group, merge)
        # (with the group's approval as shown: one made since is not overridden unseen, actions._approved_since)
        token = (signer.dumps(group_id, user["id"], view.plan.to_dict(), views.decision_state(group))
                 if view.plan else "")
        return render(request, "group.html", {"v": view, "g": group, "plan_token": token, "merge": merge,
                                              "lost": lost, "group_url": group_url,
                                              "approval": views.decision_state(group),
                                              "list_query": listq})

    def _seen_plan(request: Request, form: dict, group_id: str, user: dict) -> tuple[MergePlan | None, dict | None]:
        """The plan the page showed, and the group's approval then (views.decision_state)."""
        loaded = signer.load(form.get("plan") or "", group_id, user["id"])
        return (MergePlan.from_dict(loaded[0]), loaded[1]) if loaded else (None, None)

    @app.post("/group/{group_id}/act")
    def group_act(request: Request, group_id: str, form: dict = Depends(checked_form),
                  user: dict = Depends(current_user)):
        with store.engine.connect() as conn:
            group = group_for(conn, group_id, user)
        seen, seen_state = _seen_plan(request, form, group_id, user)
        choices = views.parse_choices(form, group["entity_type"])
        listq = list_query(form, group["entity_type"])
        if seen is None:
            flash(request, "This page was too old to act on (or its plan was damaged); here is the current plan. "
                  "Check it and try again.", "error")
            return _see_other(group_url(group_id, None, choices, listq))
        action = form.get("action")
        if action == "merge":
            outcome = actions.merge_now(store, group, user, settings, seen, choices, seen_state)
        elif action == "approve":
            outcome = actions.approve(store, group, user, settings, seen, choices, seen_state)
        elif action == "preview":
            return _see_other(group_url(group_id, seen.primary_id, choices, listq))
        else:
            raise HTTPException(400, f"Unknown action {action!r}.")
        keep = not outcome.ok and not outcome.fresh  # (the person's primary and choices, to try again)
        return _after(request, outcome, group_url(group_id, seen.primary_id if keep else None,
                                                  choices if keep else None, listq))

    def _after(request: Request, outcome: actions.Outcome, target: str) -> Response:
        if outcome.status == 403:
            return render(request, "error.html", {"code": 403, "message": outcome.message, "back": target}, 403)
        flash(request, outcome.message, "ok" if outcome.ok else "error", outcome.details, outcome.link)
        return _see_other(target)

    @app.post("/group/{group_id}/unapprove")
    def group_unapprove(request: Request, group_id: str, form: dict = Depends(checked_form),
                        user: dict = Depends(current_user)):
        """Withdraw the group's approval (an admin, or the manager who approved), as the page showed it."""
        with store.engine.connect() as conn:
            group = group_for(conn, group_id, user)
        seen_by = queries.parse_int(form.get("approved_by"), "approved_by", "a user id")
        outcome = actions.unapprove(store, group, user, settings, seen_by, form.get("approved_at") or None)
        return _after(request, outcome, group_url(group_id, listq=list_query(form, group["entity_type"])))

    @app.post("/group/{group_id}/unskip")
    def group_unskip(request: Request, group_id: str, form: dict = Depends(checked_form),
                     user: dict = Depends(current_user)):
        """Withdraw a "not duplicates" mark the group page shows (between its records, or one of them and
        a record left out of it)."""
        with store.engine.connect() as conn:
            group = group_for(conn, group_id, user)
        a = queries.parse_int(form.get("id_a"), "id_a", "a record id")
        b = queries.parse_int(form.get("id_b"), "id_b", "a record id")
        shown = {int(m) for m in group["member_ids"]} | {
            int(i["id"]) for i in group.get("left_out") or [] if isinstance(i, dict) and "id" in i}
        if a is None or b is None or a not in shown or b not in shown:
            raise BadRequest(f"id_a and id_b must be two records of group {group_id} (or left out of it), "
                             f"not {form.get('id_a')!r} and {form.get('id_b')!r}")
        outcome = actions.unskip(store, group["entity_type"], a, b, user)
        return _after(request, outcome, group_url(group_id, listq=list_query(form, group["entity_type"])))

    @app.post("/group/{group_id}/skip")
    def group_skip(request: Request, group_id: str, form: dict = Depends(checked_form),
                   user: dict = Depends(current_user)):
        with store.engine.connect() as conn:
            group = group_for(conn, group_id, user)
        record_id = queries.parse_int(form.get("record_id"), "record_id", "a record id")
        outcome = actions.skip(store, group, user, settings, record_id)
        target = group_url(group_id, listq=list_query(form, group["entity_type"]))
        if outcome.ok:
            with store.engine.connect() as conn:
                now = queries.get_group(conn, group_id)
                if now is None or not queries.can_see_group(user, now):
                    # the skip took the group out of this user's sight (their records left it): its page
                    # would say "no such group" under the success message, so go on to the next one
                    target = next_or_list(conn, group, user, list_filters(form, group["entity_type"]),
                                          list_page(form))
        return _after(request, outcome, target)

    @app.post("/group/{group_id}/include")
    def group_include(request: Request, group_id: str, form: dict = Depends(checked_form),
                      user: dict = Depends(current_user)):
        with store.engine.connect() as conn:
            group = group_for(conn, group_id, user)
        record_id = queries.parse_int(form.get("record_id"), "record_id", "a record id")
        return _after(request, actions.include(store, group, user, settings, record_id),
                      group_url(group_id, listq=list_query(form, group["entity_type"])))

    @app.post("/group/{group_id}/withdraw-include")
    def group_withdraw_include(request: Request, group_id: str, form: dict = Depends(checked_form),
                               user: dict = Depends(current_user)):
        """Withdraw the "the same" mark of a record a person added to the group (the list "Added by a
        person"), as `crm-dedup include --undo`."""
        with store.engine.connect() as conn:
            group = group_for(conn, group_id, user)
        record_id = queries.parse_int(form.get("record_id"), "record_id", "a record id")
        if record_id is None or record_id not in {int(m) for m in group["member_ids"]}:
            raise BadRequest(f"record_id must be a record of group {group_id}, not {form.get('record_id')!r}")
        return _after(request, actions.withdraw_include(store, group, user, record_id),
                      group_url(group_id, listq=list_query(form, group["entity_type"])))

    @app.post("/group/{group_id}/later")
    def group_later(request: Request, group_id: str, form: dict = Depends(checked_form),
                    user: dict = Depends(current_user)):
        with store.engine.connect() as conn:
            group = group_for(conn, group_id, user)
            target = next_or_list(conn, group, user, list_filters(form, group["entity_type"]), list_page(form))
        flash(request, f"Left group {group_id} for later; it stays {group['status']}.")
        return _see_other(target)

    # -- history ------------------------------------------------------------------------------

    def _history_rows(conn, frame, user: dict) -> list[dict]:
        """merge_history's rows with the ids of who merged and who undid (for the undo rights)."""
        # a merge not undone has no undone_at: NaT in the frame, which is truthy and has no strftime
        rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
        wanted = [int(r["id"]) for r in rows]
        extra = queries.merge_users(conn, wanted)
        links = queries.merge_links(conn, rows, user)  # (a run may have replaced the merge's group since)
        for r in rows:
            r.update(extra.get(int(r["id"]), {}))
            r["merged_ids"] = list(r["merged_ids"] or [])
            r["link"] = links.get(int(r["id"]), {})
        return rows

    @app.get("/history", response_class=HTMLResponse)
    def history_page(request: Request, entity: str | None = None, page: Int = 1, conflict: Int | None = None,
                     user: dict = Depends(current_user)):
        if entity not in (None, "", *schema.ENTITY_TYPES):
            raise HTTPException(400, f"unknown entity type {entity!r}")
        page = max(1, page)
        # a manager's history: the merges they made (those they may undo)
        frame = merge_history(store, limit=HISTORY_PAGE + 1, offset=(page - 1) * HISTORY_PAGE,
                              entity_type=entity or None, user_id=None if is_admin(user) else user["id"])
        with store.engine.connect() as conn:
            rows = _history_rows(conn, frame, user)
        more = len(rows) > HISTORY_PAGE
        rows = rows[:HISTORY_PAGE]
        for r in rows:
            r["can_undo"] = r["status"] == "applied" and (is_admin(user) or r.get("user_id") == user["id"])
        return render(request, "history.html", {"rows": rows, "entity": entity or "", "page": page, "more": more,
                                                "conflict": conflict})

    @app.post("/history/{merge_id}/undo")
    def history_undo(request: Request, merge_id: Int, form: dict = Depends(checked_form),
                     user: dict = Depends(current_user)):
        force = form.get("force") == "1"
        outcome = actions.undo(store, merge_id, user, force, settings)
        if outcome.status == 403:
            return render(request, "error.html", {"code": 403, "message": outcome.message, "back": "/history"}, 403)
        flash(request, outcome.message, "ok" if outcome.ok else "error", outcome.details, outcome.link)
        # "undo anyway" only where forcing can help: rows people changed since (listed in the details)
        forceable = not outcome.ok and bool(outcome.details)
        return _see_other(_url("/history", {"conflict": merge_id if forceable else None}))

    # -- one record ---------------------------------------------------------------------------

    @app.get("/record/{entity}/{record_id}", response_class=HTMLResponse)
    def record_page(request: Request, entity: str, record_id: Int, user: dict = Depends(current_user)):
        if entity not in schema.ENTITY_TYPES:
            raise HTTPException(404, f"There is no entity type {entity!r}.")
        with store.engine.connect() as conn:
            row = queries.read_records(conn, entity, [record_id]).get(record_id)
            # a record a merge took (soft-deleted, or deleted outright): its page says where it went
            merge = (queries.merged_into(conn, entity, record_id, row["deleted_at"] if row else None)
                     if row is None or row.get("deleted_at") else None)
            gone = row is None and merge is not None and merge["before"] is not None
            if gone:
                row = merge["before"]  # (deleted outright: the record as the merge found it)
            if row is None or (not is_admin(user) and row.get("responsible_id") != user["id"]):
                raise HTTPException(404, "There is no such record, or it is not one of yours.")
            comms = merge["comms"] if gone else queries.read_comms(conn, entity, [record_id]).get(record_id, [])
            links = queries.link_counts(conn, entity, [record_id])[record_id]
            owner = queries.users_by_id(conn, [row["responsible_id"]]).get(row["responsible_id"])
            marks = [] if gone else views.record_marks(conn, entity, row, user)  # (no record to withdraw them on)
            merged = views.merged_note(conn, entity, merge, user) if merge else None
        fields = [(k, views.FIELD_LABELS.get(k, k), row.get(k)) for k in field_kinds(entity) if k in row]
        fields += [("modified_at", "Modified", row.get("modified_at")),
                   ("deleted_at", "Deleted", row.get("deleted_at"))]
        return render(request, "record.html", {"entity": entity, "row": row, "fields": fields, "comms": comms,
                                               "links": links, "owner": owner, "marks": marks,
                                               "name": queries.display_name(entity, row), "merged": merged,
                                               "gone": gone})

    @app.post("/record/{entity}/{record_id}/unskip")
    def record_unskip(request: Request, entity: str, record_id: Int, form: dict = Depends(checked_form),
                      user: dict = Depends(current_user)):
        """Withdraw a "not duplicates" mark of this record (the record page lists them)."""
        if entity not in schema.ENTITY_TYPES:
            raise HTTPException(404, f"There is no entity type {entity!r}.")
        with store.engine.connect() as conn:
            row = queries.read_records(conn, entity, [record_id]).get(record_id)
        if row is None or not queries.may_see_record(user, row):
            raise HTTPException(404, "There is no such record, or it is not one of yours.")
        other = queries.parse_int(form.get("other_id"), "other_id", "a record id")
        if other is None:
            raise BadRequest("other_id must be the record the mark is with")
        target = f"/record/{entity}/{record_id}"
        return _after(request, actions.unskip(store, entity, record_id, other, user), target)

    return app
