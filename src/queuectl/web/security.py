"""Who may use the dashboard, and how a forged cross-site request is told apart.

The model (DECISIONS.md has the reasoning):
- There is always a token: --token, $QUEUECTL_DASHBOARD_TOKEN, or a random one printed in the
  URL at start (as Jupyter does). Every page and API call needs it, because job commands and
  output may hold secrets, and a page on localhost is reachable by any local user and, through
  DNS rebinding, by web pages.
- A browser presents the token once (`/?token=T` or the login form) and gets an HttpOnly,
  SameSite=Strict session cookie: an HMAC of the token, so the server stores nothing and a
  new token invalidates every old cookie. Scripts send `Authorization: Bearer T` instead.
- A state change is a POST, and a POST authenticated by the cookie must also carry the CSRF
  token (an HMAC of the token for another purpose; the page holds it, a foreign site cannot
  read it) in X-CSRF-Token, and an Origin, if sent, naming this host. A Bearer request needs
  neither: browsers never attach that header on their own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

COOKIE = "queuectl_session"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def new_token() -> str:
    return secrets.token_urlsafe(24)


class Guard:
    def __init__(self, token: str):
        self.token = token
        self.session = self._derive("session")
        self.csrf = self._derive("csrf")

    def _derive(self, purpose: str) -> str:
        return hmac.new(self.token.encode(), purpose.encode(), hashlib.sha256).hexdigest()

    def token_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(),
                                                             self.token.encode())

    def session_ok(self, cookie: str | None) -> bool:
        return cookie is not None and hmac.compare_digest(cookie.encode(),
                                                          self.session.encode())

    def bearer(self, headers) -> str | None:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None

    def authenticated(self, request) -> bool:
        return self.token_ok(self.bearer(request.headers)) or self.session_ok(
            request.cookies.get(COOKIE))

    def may_change(self, request) -> tuple[bool, str]:
        """(allowed, why not) for a state-changing POST."""
        if self.token_ok(self.bearer(request.headers)):
            return True, ""
        if not self.session_ok(request.cookies.get(COOKIE)):
            return False, "not logged in: open the URL printed by `queuectl dashboard`"
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            return False, "cross-site request refused"
        presented = request.headers.get("x-csrf-token", "")
        if not hmac.compare_digest(presented.encode(), self.csrf.encode()):
            return False, "missing or wrong CSRF token"
        return True, ""
