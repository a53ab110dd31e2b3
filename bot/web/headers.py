"""Security headers on every response, and a `Server` header that names no software version.

The Content-Security-Policy lets pages run only Lumi's own scripts: files under /static, and the inline
scripts of the templates in `bot/web/templates/`, allowed by their SHA-256. The hashes come from the
template files, never from the page being served, so a script that found its way into a page's content
(an unescaped prompt, say) is not on the list and does not run. Changing an inline script changes its hash
with it; nothing needs updating by hand.

- `img-src`/`connect-src` allow `blob:` and `data:`: three.js's GLTFLoader reads a GLB's embedded textures
  through them; with a remote blob store they also allow its origins, where `/files` links redirect (the
  viewer's fetch of the GLB, the thumbnail);
- `style-src` allows inline styles: the playground page has a `<style>` block and features may add `style`
  attributes to their sections; styles cannot run code;
- `frame-ancestors 'none'` (and `X-Frame-Options: DENY` for older browsers): no page can be framed;
- `Referrer-Policy: no-referrer`: download links and viewer addresses work as unlisted share links, so
  they must not travel to other sites in a Referer header.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib import resources

from aiohttp import web

from bot.web.keys import BLOB_ORIGINS

SERVER_NAME = "Lumi"

# A <script> without a src attribute; its text between the tags is what the browser hashes.
_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)


def inline_script_hashes(html: str) -> list[str]:
    """CSP source expressions (`'sha256-...'`) for the inline scripts in `html`, in page order."""
    return [script_hash(match.group(1)) for match in _INLINE_SCRIPT.finditer(html)]


def script_hash(text: str) -> str:
    """The CSP source expression (`'sha256-...'`) that lets exactly this inline script run."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


@cache
def content_security_policy(blob_origins: tuple[str, ...] = ()) -> str:
    templates = resources.files("bot.web").joinpath("templates")
    hashes: list[str] = []
    for template in sorted(templates.iterdir(), key=lambda item: item.name):
        if template.name.endswith(".html"):
            hashes.extend(inline_script_hashes(template.read_text(encoding="utf-8")))
    scripts = " ".join(["'self'", *dict.fromkeys(hashes)])
    fetched = " ".join(["'self'", "data:", "blob:", *blob_origins])
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {scripts}",
            "style-src 'self' 'unsafe-inline'",
            f"img-src {fetched}",
            f"connect-src {fetched}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare` hook: runs for every routed response, streamed ones included, before its
    headers are sent (a middleware would miss responses a handler has already prepared)."""
    headers = response.headers
    headers["Server"] = SERVER_NAME
    headers.setdefault("Content-Security-Policy", content_security_policy(request.app.get(BLOB_ORIGINS, ())))
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers.setdefault("Referrer-Policy", "no-referrer")
