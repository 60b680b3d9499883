"""The dashboard's HTML: one shell for every page (the page's script fills ``<main>`` from its
JSON endpoint), the sign-in form, and the static assets, which ship in the package.

Assets are read once into memory from a fixed list (no path from a request ever reaches the
filesystem) and served with a content hash in their URL, so browsers may cache them for good.
Every page sends a Content-Security-Policy that allows scripts, styles and connections from
this origin only: no inline script, nothing from a CDN (production clusters often have no
internet access), no framing.
"""

import hashlib
import html
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

STATIC_PREFIX: Final = "/ui/static/"
ASSETS: Final = {
    "ui.css": "text/css; charset=utf-8",
    "ui.js": "text/javascript; charset=utf-8",
    "vendor/uplot/uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "vendor/uplot/uPlot.min.css": "text/css; charset=utf-8",
    "vendor/uplot/LICENSE": "text/plain; charset=utf-8",
}
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
PAGES: Final = {  # path -> (title, page name, JSON endpoint)
    "/ui": ("Overview", "overview", "/ui/api/overview"),
    "/ui/builds": ("Builds", "builds", "/ui/api/builds"),
    "/ui/users": ("User inspector", "users", "/ui/api/users/"),
    "/ui/items": ("Item", "items", "/ui/api/items/"),
    "/ui/drift": ("Drift", "drift", "/ui/api/drift"),
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    digest: str


@cache
def asset(name: str) -> Asset | None:
    """A packaged static file by its name in ``ASSETS`` (None for any other name)."""
    if name not in ASSETS:
        return None
    body = resources.files("api.ui").joinpath("static", *name.split("/")).read_bytes()
    return Asset(body, ASSETS[name], hashlib.sha256(body).hexdigest()[:16])


def asset_url(name: str) -> str:
    found = asset(name)
    assert found is not None, name
    return f"{STATIC_PREFIX}{name}?v={found.digest}"


def _head(title: str, csrf: str | None) -> str:
    meta = f'<meta name="csrf-token" content="{html.escape(csrf)}">' if csrf else ""
    return (
        '<!doctype html>\n<html lang="en"><head>'
        '<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>recsys · {html.escape(title)}</title>{meta}"
        '<link rel="icon" href="data:,">'  # no favicon request (a 404 in the console)
        f'<link rel="stylesheet" href="{asset_url("vendor/uplot/uPlot.min.css")}">'
        f'<link rel="stylesheet" href="{asset_url("ui.css")}">'
    )


@cache
def pages_json() -> str:
    """``PAGES`` for the page's script, which moves between pages without loading a new
    document (``ui.js``): the list of pages is declared here only."""
    return json.dumps(
        {p: {"title": t, "page": n, "endpoint": e} for p, (t, n, e) in PAGES.items()},
        separators=(",", ":"),
    )


def page(path: str, csrf: str | None, signed_in: bool) -> str:
    """The shell of the page at ``path`` (a key of ``PAGES``)."""
    title, name, endpoint = PAGES[path]
    links = "".join(
        f'<a href="{p}"{" aria-current=page" if p == path else ""}>{html.escape(t)}</a>'
        for p, (t, _, _) in PAGES.items()
        if p != "/ui/items"
    )
    sign_out = '<button id="sign-out" type="button">Sign out</button>' if signed_in else ""
    return (
        _head(title, csrf)
        + f'<script src="{asset_url("vendor/uplot/uPlot.iife.min.js")}" defer></script>'
        + f'<script src="{asset_url("ui.js")}" defer></script>'
        + f'</head><body data-page="{name}" data-endpoint="{endpoint}" '
        + f'data-pages="{html.escape(pages_json())}">'
        + f'<header><span class="brand">recsys</span><nav>{links}</nav>{sign_out}</header>'
        + f'<main id="main"><h1>{html.escape(title)}</h1>'
        + '<p id="status" class="status">Loading…</p>'
        + "<noscript><p>The pages draw their data with a small script that ships with the "
        + f"server (no framework, nothing from the internet). The raw data is at {endpoint}."
        + '</p></noscript><div id="content"></div></main></body></html>'
    )


def login_page(next_path: str, error: str | None = None) -> str:
    err = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return (
        _head("Sign in", None)
        + '</head><body data-page="login"><main class="login"><h1>recsys dashboard</h1>'
        + "<p>This server has an API key. Enter it to open the dashboard: the browser keeps "
        + "a signed session cookie (HttpOnly, SameSite=Strict), never the key.</p>"
        + err
        + '<form method="post" action="/ui/login">'
        + f'<input type="hidden" name="next" value="{html.escape(next_path)}">'
        # a password form wants a user name field (browsers' password managers, accessibility)
        + '<input type="text" name="username" value="api-key" autocomplete="username" hidden>'
        + '<label>API key <input type="password" name="key" autocomplete="current-password" '
        + 'required autofocus></label> <button type="submit">Sign in</button></form>'
        + "</main></body></html>"
    )
