"""The API docs page (Swagger UI) served with no CDN: its JS, CSS and icon come from the pinned
`swagger-ui-bundle-v2` package, so the page works on an offline clinic network."""

from __future__ import annotations

from litestar import Response, Router
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/schema/assets"


def _not_found_as_problem(response: Response[object]) -> Response[object]:
    # Litestar answers an unknown /schema/... page with its own HTML 404; raising here sends it
    # through the app's error mapper like every other unknown route.
    if response.status_code == 404:
        raise NotFoundException
    return response


def schema_router() -> Router:
    """The router Litestar's OpenAPI plugin fills with the schema and docs pages."""
    return Router("/schema", route_handlers=[], include_in_schema=False, after_request=_not_found_as_problem)


def swagger_page() -> SwaggerRenderPlugin:
    return SwaggerRenderPlugin(
        js_url=f"{ASSETS}/swagger-ui-bundle.js",
        css_url=f"{ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS}/favicon-32x32.png'>",
    )


def swagger_assets() -> Router:
    return create_static_files_router(
        path=ASSETS,
        directories=[str(swagger_ui_path)],
        opt={"exclude_from_auth": True, "transaction": False},
        include_in_schema=False,
        name="swagger-assets",
    )
