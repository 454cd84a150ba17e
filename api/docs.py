"""The API docs page (Swagger UI) served with no CDN: its JS, CSS and icon come from the pinned
`swagger-ui-bundle-v2` package, so the page works on an offline clinic network."""

from __future__ import annotations

from litestar import Router
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/schema/assets"


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
