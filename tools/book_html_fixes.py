"""A local Sphinx extension: small fixes so that every page of the book loads cleanly, offline.

Loaded by ``_config.yml`` (``sphinx.local_extensions``). Each fix is for a problem the browser check
(``tools/browser_check.py``) saw in a headless Chromium:

1. Sphinx 7.4 emits inline ``<script>`` bodies that extensions add after the builder started
   (sphinx-thebe, sphinx-togglebutton) twice — once with filename ``None``, once with ``""`` — and
   the second ``const THEBE_JS_URL`` is a console error. Duplicates are dropped per page.
2. Thebe is off (``launch_buttons.thebe: false``), so sphinx-thebe's loader and its configuration
   (which names a CDN URL) are dropped from every page.
3. With ``repository.path_to_book: "."`` sphinx-book-theme writes launch URLs as ``.../main/./chapters``;
   the ``/./`` is normalised away so the HTML holds the canonical Colab URL.
"""

from __future__ import annotations

import posixpath
from urllib.parse import urlsplit, urlunsplit


def _script_key(js) -> tuple:
    attributes = getattr(js, "attributes", {}) or {}
    return (getattr(js, "filename", js) or "", tuple(sorted((k, str(v)) for k, v in attributes.items())))


def _is_thebe(js) -> bool:
    filename = getattr(js, "filename", "") or ""
    body = (getattr(js, "attributes", {}) or {}).get("body", "")
    return filename.endswith("sphinx-thebe.js") or "THEBE_JS_URL" in body or "thebe@" in filename


def _normalise(url: str) -> str:
    parts = urlsplit(url)
    if "/./" not in parts.path:
        return url
    path = posixpath.normpath(parts.path) + ("/" if parts.path.endswith("/") else "")
    return urlunsplit(parts._replace(path=path))


def _fix_buttons(buttons) -> None:
    for button in buttons or []:
        if isinstance(button, dict):
            if isinstance(button.get("url"), str):
                button["url"] = _normalise(button["url"])
            _fix_buttons(button.get("buttons"))


def _fix_page(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if scripts:
        thebe_on = bool((app.config.html_theme_options.get("launch_buttons") or {}).get("thebe"))
        seen, kept = set(), []
        for js in scripts:
            key = _script_key(js)
            if key in seen or (not thebe_on and _is_thebe(js)):
                continue
            seen.add(key)
            kept.append(js)
        scripts[:] = kept
    _fix_buttons(context.get("header_buttons"))


def setup(app):
    # after sphinx-book-theme (default priority 500) has added its header buttons
    app.connect("html-page-context", _fix_page, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
