"""Passwords (argon2) and signing in: the CRM's users table holds the hashes.

``set_password`` is what ``crm-dedup users set-password`` calls; ``authenticate`` is what the sign-in
page calls. A session remembers a short digest of the password hash, so changing a password ends
every session signed in with the old one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from crm import schema

log = logging.getLogger(__name__)

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
MIN_LENGTH = 8
# Verified against when the email is unknown, so that a wrong email takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash("not a real password, only for timing")


class AuthError(ValueError):
    """A password or user that cannot be used; the message says why."""


class UnknownUser(AuthError, LookupError):
    """No user has this email."""


def hash_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise AuthError(f"A password needs at least {MIN_LENGTH} characters.")
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches ``password_hash``; False for a wrong password or no hash."""
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def password_version(password_hash: str | None) -> str:
    """A short digest of the hash stored in the session: a new password ends the old sessions."""
    return hashlib.blake2b((password_hash or "").encode(), digest_size=8).hexdigest()


def sign_out_everywhere(store, user_id: int) -> None:
    """End every session of the user (a session is a signed cookie: it is refused from now on)."""
    u = schema.users
    with store.engine.begin() as conn:
        conn.execute(u.update().where(u.c.id == user_id).values(signed_out_at=_now()))


def session_current(signed_out_at: dt.datetime | None, signed_in_at: object) -> bool:
    """Whether a session that began at ``signed_in_at`` (ISO text, as the session keeps it) is later
    than the user's last sign-out."""
    if signed_out_at is None:
        return True
    try:
        return dt.datetime.fromisoformat(str(signed_in_at)) > signed_out_at
    except ValueError:
        return False


def session_start() -> str:
    """The moment a session begins, as the session keeps it (microseconds: a sign-in right after a
    sign-out comes after it)."""
    return _now().isoformat()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def set_password(store, email: str, password: str) -> int:
    """Set the password of the user with this email; returns the user's id."""
    u = schema.users
    digest = hash_password(password)
    with store.engine.begin() as conn:
        user_id = conn.execute(sa.select(u.c.id).where(u.c.email == email)).scalar()
        if user_id is None:
            raise UnknownUser(f"There is no user with the email {email!r} in {store.display_url}.")
        conn.execute(u.update().where(u.c.id == user_id).values(password_hash=digest))
    log.info("password set for user #%s", user_id)
    return int(user_id)


def authenticate(store, email: str, password: str) -> dict[str, Any] | None:
    """The user row (id, name, email, role, password_hash) when email and password match, else None."""
    u = schema.users
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(u.c.id, u.c.name, u.c.email, u.c.role, u.c.password_hash)
                           .where(u.c.email == (email or "").strip())).mappings().first()
    if row is None or not row["password_hash"]:
        verify_password(_DUMMY_HASH, password or "")
        return None
    if not verify_password(row["password_hash"], password or ""):
        return None
    user = dict(row)
    if needs_rehash(user["password_hash"]):
        # the hasher's parameters got stronger since: store a fresh hash while we know the password
        user["password_hash"] = _hasher.hash(password)
        with store.engine.begin() as conn:
            conn.execute(u.update().where(u.c.id == user["id"]).values(password_hash=user["password_hash"]))
    return user
