"""Who may see the dashboard, and how a browser proves it.

The API's own auth is a header (``X-API-Key``), which a browser cannot add to a page navigation.
So, with a key configured, the dashboard has a sign-in form: the key posted once to
``/ui/login`` buys a session cookie, and the dashboard's pages and JSON endpoints accept that
cookie (and the header, for scripts); nothing else of the API does, so the API's header auth is
unchanged. The key never travels in a URL.

- The cookie is ``HttpOnly`` (scripts cannot read it), ``SameSite=Strict`` (a browser does not
  send it on requests another site starts), ``Path=/ui`` and ``Secure`` over HTTPS. Its value is
  an expiry and a nonce signed with HMAC-SHA256 under a key derived from the API key, so every
  worker and replica verifies it without shared state, and changing the API key signs
  everyone out (OWASP Session Management Cheat Sheet).
- State-changing requests made with the cookie (Promote, sign-out) also need a CSRF token in a
  header, derived from the session and handed to the page in a ``<meta>`` tag, and must not come
  from another origin (``Origin``, ``Sec-Fetch-Site``): the OWASP CSRF Prevention Cheat Sheet's
  synchroniser token plus origin check, on top of SameSite. A request with the key in the
  header needs neither: no browser sends that header on its own.
- Without a key configured, the dashboard is as open as the API, but Promote is refused: it
  would let anyone who can reach the port, or a page they visit, switch production traffic.
"""

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from starlette.responses import Response

from api.deps import API_KEY_HEADER

COOKIE: Final = "recsys_ui"
CSRF_HEADER: Final = "X-CSRF-Token"
COOKIE_PATH: Final = "/ui"
_SESSION_CONTEXT: Final = b"recsys dashboard session v1"
_CSRF_CONTEXT: Final = b"recsys dashboard csrf v1"

Access = Literal["open", "header", "session"]
"""How a request was let in: no key configured, the key in its header, or a session cookie."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class UiAuth:
    api_key: bytes | None
    session_s: float
    secure_cookie: Literal["auto", "always"]

    @property
    def enabled(self) -> bool:
        return self.api_key is not None

    @property
    def _signing_key(self) -> bytes:
        assert self.api_key is not None
        return hmac.new(self.api_key, _SESSION_CONTEXT, hashlib.sha256).digest()

    def _mac(self, payload: str, context: bytes = b"") -> str:
        return _b64(hmac.new(self._signing_key, context + payload.encode(), "sha256").digest())

    def key_matches(self, given: bytes | None) -> bool:
        """Constant-time, like the API's header check (which gets the key's UTF-8 bytes as
        Starlette's latin-1 header text: ``encode("latin-1")`` gives them back)."""
        if self.api_key is None:
            return True
        return given is not None and secrets.compare_digest(given, self.api_key)

    def new_session(self, now: float | None = None) -> str:
        expiry = int((time.time() if now is None else now) + self.session_s)
        payload = f"{expiry}.{secrets.token_urlsafe(12)}"
        return f"{payload}.{self._mac(payload)}"

    def session_valid(self, token: str | None, now: float | None = None) -> bool:
        if self.api_key is None or not token:
            return False
        payload, _, mac = token.rpartition(".")
        expiry, _, nonce = payload.partition(".")
        if not (expiry.isdigit() and nonce and mac):
            return False
        if not secrets.compare_digest(mac.encode(), self._mac(payload).encode()):
            return False
        return int(expiry) > (time.time() if now is None else now)

    def csrf_token(self, session: str) -> str:
        return self._mac(session, _CSRF_CONTEXT)

    def access(self, request: Request) -> Access | None:
        """How ``request`` may see the dashboard, None if it may not."""
        if self.api_key is None:
            return "open"
        header = request.headers.get(API_KEY_HEADER)
        if header is not None and self.key_matches(header.encode("latin-1")):
            return "header"
        if self.session_valid(request.cookies.get(COOKIE)):
            return "session"
        return None

    def set_session_cookie(self, response: Response, request: Request, token: str) -> None:
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(self.session_s),
            path=COOKIE_PATH,
            secure=self.secure_cookie == "always" or request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    @staticmethod
    def clear_session_cookie(response: Response) -> None:
        response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site or origin.

    ``Sec-Fetch-Site`` (every current browser) is trusted first; else ``Origin`` must name this
    host. A request with neither header is not a browser's cross-site request (curl, a script)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin != "null" and urlsplit(origin).netloc == host


def require_csrf_safe(request: Request, auth: UiAuth, access: Access) -> None:
    """403 unless a state-changing request made with the session cookie carries the session's
    CSRF token and comes from this origin. Header-key requests are not ambient: no check."""
    if access != "session":
        return
    session = request.cookies.get(COOKIE, "")
    given = request.headers.get(CSRF_HEADER, "")
    if not same_origin(request):
        raise HTTPException(403, detail="cross-origin request refused")
    if not secrets.compare_digest(given.encode(), auth.csrf_token(session).encode()):
        raise HTTPException(403, detail=f"missing or invalid {CSRF_HEADER} header")
