"""The dashboard's data: one JSON endpoint per page (``api/ui/dashboard.py`` composes them), and
the one action, Promote (``POST /ui/api/promote``).

Open to whoever may see the dashboard: everyone without an API key, else a caller with the key
in ``X-API-Key`` or a signed-in browser (``api/ui/auth.py``). Left out of the OpenAPI schema:
they serve the dashboard's pages and may change with them; the API's contract is elsewhere.
"""

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from api.routes.ui import UiAuthDep
from api.schemas import MAX_DEVICE_LEN, MAX_ID_LEN, MAX_K, MAX_TS
from api.ui.auth import Access, require_csrf_safe
from api.ui.dashboard import Context, Dashboard, Page, page_bytes
from api.ui.html import SECURITY_HEADERS
from recsys.errors import StoreError
from recsys.records import Record

log = logging.getLogger(__name__)


async def ui_access(request: Request, auth: UiAuthDep) -> Access:
    access = auth.access(request)
    if access is None:
        raise HTTPException(401, detail="sign in at /ui/login, or send the X-API-Key header")
    return access


async def get_dashboard(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


DashboardDep = Annotated[Dashboard, Depends(get_dashboard)]
AccessDep = Annotated[Access, Depends(ui_access)]
router = APIRouter(prefix="/ui/api", include_in_schema=False, dependencies=[Depends(ui_access)])

DeviceQuery = Annotated[str | None, Query(min_length=1, max_length=MAX_DEVICE_LEN)]
TsQuery = Annotated[int | None, Query(ge=0, le=MAX_TS)]
ArmQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=64, description="The A/B arm whose build the page shows."),
]


def _json(page: Record | Page) -> Response:
    """A page's bytes (composed off the event loop: ``api/ui/dashboard.py``), or a record."""
    headers = SECURITY_HEADERS | {"Cache-Control": "no-store"}
    body = page if isinstance(page, bytes) else page_bytes(page)
    return Response(body, media_type="application/json", headers=headers)


@router.get("/overview")
async def overview(dashboard: DashboardDep) -> Response:
    return _json(await dashboard.overview())


@router.get("/builds")
async def builds(dashboard: DashboardDep, access: AccessDep) -> Response:
    return _json(await dashboard.builds(can_promote=access != "open"))


class PromoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    line: str = Field(min_length=1, max_length=64)


@router.post("/promote")
async def promote(
    body: PromoteIn,
    request: Request,
    auth: UiAuthDep,
    access: AccessDep,
    dashboard: DashboardDep,
) -> Response:
    """The newest build of ``line`` becomes the champion's: ``recsys ab promote`` from the
    Builds page. Needs the API key (a signed-in session, with its CSRF token and from this
    origin, or the key's header): without one configured it is refused, since anyone who can
    reach the port, or a page they open, could otherwise switch production traffic."""
    if access == "open":
        raise HTTPException(
            403,
            detail="promotion from the dashboard needs an API key: set RECSYS_SERVE__API_KEY, "
            "or use recsys ab promote",
        )
    require_csrf_safe(request, auth, access)
    try:
        done = await dashboard.promote(body.line)
    except ValueError as e:
        raise HTTPException(422, detail=str(e)) from None
    except StoreError as e:
        raise HTTPException(409, detail=str(e)) from None
    log.warning(
        "dashboard: promoted %s: champion %s -> %s", done.line, done.previous, done.champion
    )
    return _json(done)


@router.get("/users/{user_id:anytext}")
async def user(
    dashboard: DashboardDep,
    user_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LEN)],
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 20,
    device: DeviceQuery = None,
    ts: TsQuery = None,
    alt_device: DeviceQuery = None,
    alt_ts: TsQuery = None,
) -> Response:
    """The user inspector. ``device`` and ``ts`` are the context of the answer (as the same
    parameters of ``GET /recommendations``); ``alt_*`` the context it is compared with."""
    alternative = (
        Context(device=alt_device, ts=alt_ts)
        if alt_device is not None or alt_ts is not None
        else None
    )
    return _json(await dashboard.user(user_id, k, Context(device=device, ts=ts), alternative))


@router.get("/items/{item_id:anytext}")
async def item(
    dashboard: DashboardDep,
    item_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LEN)],
    arm: ArmQuery = None,
) -> Response:
    """The item in the champion's build, or in ``arm``'s during an A/B experiment."""
    return _json(await dashboard.item(item_id, arm))


@router.get("/drift")
async def drift(dashboard: DashboardDep, arm: ArmQuery = None) -> Response:
    """Drift of the champion's build, or of ``arm``'s."""
    return _json(await dashboard.drift(arm))
