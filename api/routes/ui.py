"""The dashboard's pages, its static assets, and sign-in / sign-out (``api/ui/auth.py``).

Pages are the same shell each (``api/ui/html.py``); their data comes from ``/ui/api/*``
(``api/routes/ui_data.py``). Left out of the OpenAPI schema: they are for browsers.
"""

from typing import Annotated
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.ui.auth import COOKIE, UiAuth, require_csrf_safe, same_origin
from api.ui.html import PAGES, SECURITY_HEADERS, asset, login_page, page

router = APIRouter(include_in_schema=False)


async def get_ui_auth(request: Request) -> UiAuth:
    auth: UiAuth = request.app.state.ui_auth
    return auth


UiAuthDep = Annotated[UiAuth, Depends(get_ui_auth)]


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a dashboard path of this server, never another site
    (``//evil.example``, ``/\\evil.example`` and absolute URLs are refused)."""
    if not target or not target.startswith("/ui") or "\\" in target or target.startswith("//"):
        return "/ui"
    return target


def _html(body: str, status: int = 200) -> HTMLResponse:
    headers = SECURITY_HEADERS | {"Cache-Control": "no-store"}
    return HTMLResponse(body, status_code=status, headers=headers)


def _page_or_sign_in(request: Request, auth: UiAuth, path: str) -> Response:
    access = auth.access(request)
    if access is None:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/ui/login?next={quote(here, safe='')}", status_code=303)
    session = request.cookies.get(COOKIE) if access == "session" else None
    csrf = auth.csrf_token(session) if session else None
    return _html(page(path, csrf, signed_in=access == "session"))


def _add_page(path: str) -> None:
    async def show(request: Request, auth: UiAuthDep) -> Response:
        return _page_or_sign_in(request, auth, path)

    show.__name__ = f"ui_page_{PAGES[path][1]}"
    router.add_api_route(path, show, methods=["GET"], response_class=HTMLResponse)


for _path in PAGES:
    _add_page(_path)


@router.get("/ui/", response_class=RedirectResponse)
async def ui_slash() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=308)


@router.get("/ui/static/{name:path}")
async def static_asset(name: str) -> Response:
    """A packaged asset; its URL carries a hash of its content, so it can be cached for good."""
    found = asset(name)
    if found is None:
        raise HTTPException(404, detail="Not Found")
    return Response(
        found.body,
        media_type=found.content_type,
        headers={
            "Cache-Control": "public, max-age=31536000, immutable",
            "ETag": f'"{found.digest}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/ui/login", response_class=HTMLResponse)
async def login_form(
    request: Request,
    auth: UiAuthDep,
    next_path: Annotated[str | None, Query(alias="next", max_length=2048)] = None,
) -> Response:
    if not auth.enabled or auth.access(request) is not None:
        return RedirectResponse(safe_next(next_path), status_code=303)
    return _html(login_page(safe_next(next_path)))


@router.post("/ui/login", response_class=HTMLResponse)
async def login(request: Request, auth: UiAuthDep) -> Response:
    """The key from the form, once: a session cookie and back to the page asked for. A wrong
    key gets the form again with a 401; a form posted from another site, a 403."""
    if not auth.enabled:
        return RedirectResponse("/ui", status_code=303)
    if not same_origin(request):
        return _html(login_page("/ui", "Sign-in refused: the form came from another site."), 403)
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return _html(login_page("/ui", "Sign-in needs the form's fields."), 415)
    try:
        fields = parse_qs((await request.body()).decode("utf-8"), max_num_fields=4)
    except (UnicodeDecodeError, ValueError):
        return _html(login_page("/ui", "Sign-in needs the form's fields."), 400)
    target = safe_next((fields.get("next") or ["/ui"])[0])
    key = (fields.get("key") or [""])[0]
    if not auth.key_matches(key.encode("utf-8")):
        return _html(login_page(target, "That is not this server's API key."), 401)
    response = RedirectResponse(target, status_code=303)
    auth.set_session_cookie(response, request, auth.new_session())
    return response


@router.post("/ui/logout")
async def logout(request: Request, auth: UiAuthDep) -> Response:
    access = auth.access(request)
    if access is None:
        raise HTTPException(401, detail="not signed in")
    require_csrf_safe(request, auth, access)
    response = Response(status_code=204)
    auth.clear_session_cookie(response)
    return response
