"""The dashboard: a page and its script, served by ``predq serve`` at ``/``, reading and acting
through the same ``/v1`` routes as every other client (signed in with a session cookie).

No front-end build step and nothing from the internet: ``static/`` holds the page, its style
and one script written for this dashboard, served from the package. Sign-in trades an API key for
a session (api/sessions.py); ``GET /session`` tells the page its role and CSRF token.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from api import sessions
from api.auth import Role, all_keys, match, role_of
from api.config import ApiConfig
from api.problems import Problem

STATIC = Path(__file__).parent / "static"
#: The page may load only what ``predq serve`` serves; output previews may follow a redirect to
#: the output store (a presigned S3 URL), so images and media may come from any http(s) origin.
CSP = (
    "default-src 'self'; img-src 'self' data: blob: http: https:; "
    "media-src 'self' blob: http: https:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


class SignIn(BaseModel):
    key: str = Field(min_length=1, max_length=512)


class SessionInfo(BaseModel):
    role: Role
    csrf_token: str
    expires_at: int


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


@router.get("/session", response_model=SessionInfo)
async def current(request: Request) -> SessionInfo:
    """The signed-in browser's role and CSRF token (401 when not signed in)."""
    config: ApiConfig = request.app.state.config
    session = sessions.open_session(request.cookies.get(sessions.COOKIE), all_keys(config))
    role = role_of(session.key.get_secret_value(), config) if session else None
    if session is None or role is None:
        raise Problem(401, "Unauthenticated", "sign in with an API key")
    return SessionInfo(role=role, csrf_token=session.csrf_token, expires_at=session.expires_at)


@router.post("/session", response_model=SessionInfo)
async def sign_in(request: Request, body: SignIn) -> Response:
    """Trade an API key for a session cookie."""
    config: ApiConfig = request.app.state.config
    found = match(body.key, config)
    if found is None:
        raise Problem(401, "Unauthenticated", "that is not an API key of this server")
    role, key = found
    value = sessions.issue(key)
    session = sessions.open_session(value, [key])
    assert session is not None
    info = SessionInfo(role=role, csrf_token=session.csrf_token, expires_at=session.expires_at)
    response = JSONResponse(info.model_dump(mode="json"), headers={"Cache-Control": "no-store"})
    response.set_cookie(
        sessions.COOKIE,
        value,
        max_age=sessions.LIFETIME_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/session/end", status_code=204)
async def sign_out() -> Response:
    response = Response(status_code=204)
    response.delete_cookie(sessions.COOKIE, path="/", httponly=True, samesite="strict")
    return response


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui", StaticFiles(directory=STATIC), name="ui")
