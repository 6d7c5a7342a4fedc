"""The public pages (DESIGN §9), served beside the API by the same app.

``install(app)`` adds the pages' router, their static files (``/static/``:
styles, scripts and the vendored JavaScript) and HTML 404s for the pages'
paths; the JSON API and its problems are left as they are.
"""

from __future__ import annotations

import inspect

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.web import pages
from app.web.rendering import STATIC


def install(app: FastAPI) -> None:
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    api_handler = app.exception_handlers[StarletteHTTPException]

    async def page_or_problem(request: Request, exc: Exception) -> Response:
        """A 404 under a page's path is a page; everything else stays a problem+json."""
        if (
            isinstance(exc, StarletteHTTPException)
            and exc.status_code == 404
            and pages.is_page_path(request.url.path)
        ):
            return pages.not_found(request, pages.NO_PAGE, path=request.url.path[:200])
        answered = api_handler(request, exc)
        response: Response = await answered if inspect.isawaitable(answered) else answered
        return response

    app.add_exception_handler(StarletteHTTPException, page_or_problem)
