"""Sessions, CSRF tokens, signed plans and security headers.

The session is Starlette's SessionMiddleware: a cookie signed with itsdangerous, holding the user id,
a digest of their password hash (a new password ends old sessions), the CSRF token and the key of
the messages to show on the next page. Every POST must carry the session's CSRF token in its form (``csrf_token``).
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections import OrderedDict
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import MutableHeaders
from starlette.requests import Request

SESSION_COOKIE = "crm_review_session"
SESSION_MAX_AGE = 12 * 3600
# Set on signing in, it outlives the session and holds nothing: someone sent to sign in who still has
# it had a session that ended (the browser drops a timed-out session cookie, so the session cannot
# tell), and is told so, not shown a bare sign-in form.
SIGNED_IN_COOKIE = "crm_review_signed_in"
SIGNED_IN_MAX_AGE = 30 * 24 * 3600
PLAN_MAX_AGE = 24 * 3600
MAX_DETAILS = 20  # lines of detail under a message (the changes a stale plan or an undo found)

# No inline script or style anywhere: the only script is /static/review.js.
HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


class SecurityHeaders:
    """ASGI middleware adding the headers above to every HTTP response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in HEADERS.items():
                    if key not in headers:
                        headers[key] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(request: Request, form: dict[str, Any]) -> bool:
    expected = request.session.get("csrf")
    given = form.get("csrf_token")
    return bool(expected) and isinstance(given, str) and hmac.compare_digest(expected, given)


class Flashes:
    """Messages shown once, on the next page of the same session. They stay in this process and the
    session cookie holds only their key: a list of changes (Cyrillic escapes to six bytes a letter in
    the cookie's JSON) would not fit in a 4 kB cookie. `crm-dedup review` runs one process."""

    def __init__(self, limit: int = 2000):
        self._items: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def add(self, request: Request, text: str, level: str = "info", details: list[str] | None = None,
            link: tuple[str, str] | None = None) -> None:
        """``link``: (href, words) of a page on this site the message points to."""
        key = request.session.get("flash")
        if not isinstance(key, str):
            key = request.session["flash"] = secrets.token_urlsafe(12)
        message = {"level": level, "text": text, "details": list(details or [])[:MAX_DETAILS],
                   "link": {"href": link[0], "text": link[1]} if link else None}
        with self._lock:
            items = self._items.setdefault(key, [])
            items.append(message)
            del items[:-3]
            self._items.move_to_end(key)
            while len(self._items) > self._limit:
                self._items.popitem(last=False)

    def pop(self, request: Request) -> list[dict[str, Any]]:
        key = request.session.pop("flash", None)
        if not isinstance(key, str):
            return []
        with self._lock:
            return self._items.pop(key, [])


class PlanSigner:
    """The plan a person was shown travels with the form, signed, so that merging can check that the
    rows did not change since (and nobody can swap in another plan); with it, the group's approval as
    shown (review.views.decision_state), so that a person's approval made since is not overridden
    unseen."""

    def __init__(self, secret_key: str):
        self._s = URLSafeTimedSerializer(secret_key, salt="crm-dedup-review-plan")

    def dumps(self, group_id: str, user_id: int, plan: dict, seen: dict | None = None) -> str:
        return self._s.dumps({"g": group_id, "u": user_id, "p": plan, "s": seen})

    def load(self, token: str, group_id: str, user_id: int) -> tuple[dict, dict | None] | None:
        """(the plan, the group's approval as shown: None in a token made before it was signed too), or
        None when the token is damaged, too old, or made for another group or user."""
        try:
            data = self._s.loads(token, max_age=PLAN_MAX_AGE)
        except (BadSignature, ValueError, TypeError):
            return None
        if not isinstance(data, dict) or data.get("g") != group_id or data.get("u") != user_id \
                or not isinstance(data.get("p"), dict):
            return None
        seen = data.get("s")
        return data["p"], seen if isinstance(seen, dict) else None

    def loads(self, token: str, group_id: str, user_id: int) -> dict | None:
        """The plan alone (see load)."""
        loaded = self.load(token, group_id, user_id)
        return loaded[0] if loaded else None
