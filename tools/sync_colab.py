#!/usr/bin/env python
"""Stamp the Colab badge and the canonical setup cell into every chapter notebook.

The repository URL and branch are set once, in ``_config.yml``. This script derives from them

(a) the "Open in Colab" badge line in the notebook's first markdown cell::

        [![Open in Colab](../images/colab-badge.svg)](https://colab.research.google.com/github/<org>/<repo>/blob/<branch>/chapters/<file>.ipynb)

    (an existing badge line is replaced in place; otherwise the badge goes just before the
    "Learning objectives" heading, or at the end of that cell), and

(b) the setup cell, the notebook's first code cell, tagged ``hide-cell``. It is recognised by its
    first line, ``# --- setup (stamped by tools/sync_colab.py) ---`` (or, for a hand-written one,
    by mentioning both ``NODELIB_SOURCE`` and ``find_spec("nodelib")``) and replaced in place,
    keeping its outputs; otherwise it is inserted just before the first code cell.

Nothing else in a notebook is touched: other cells, outputs and metadata are kept as they are.

Usage::

    python tools/sync_colab.py                 # stamp every chapters/*.ipynb
    python tools/sync_colab.py chapters/01_odes_and_euler.ipynb
    python tools/sync_colab.py --check         # exit 1 and list notebooks that are out of sync
"""

from __future__ import annotations

import argparse
import copy
import posixpath
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
SETUP_MARKER = "# --- setup (stamped by tools/sync_colab.py) ---"
SETUP_TAG = "hide-cell"
SETUP_CELL_ID = "nodelib-setup"
BADGE_ALT = "Open in Colab"
BADGE_IMAGE = "images/colab-badge.svg"  # relative to the book root

# A line that is (or contains) a Colab badge: ours, or the usual googleusercontent one.
_BADGE_LINE = re.compile(r"colab-badge|\[!\[Open in Colab\]", re.IGNORECASE)
_OBJECTIVES_LINE = re.compile(r"^\s*(#+\s*|\*\*)\s*Learning objectives", re.IGNORECASE)


@dataclass(frozen=True)
class BookConfig:
    """The repository facts from ``_config.yml`` that notebooks depend on."""

    repository_url: str  # https://github.com/<org>/<repo>
    branch: str
    path_to_book: str  # the book's folder inside the repository, "" for the root
    colab_url: str  # https://colab.research.google.com
    org: str
    repo: str

    @property
    def install_source(self) -> str:
        """The pip requirement a notebook installs nodelib from when it is missing."""
        return f"git+{self.repository_url}@{self.branch}"

    def colab_link(self, notebook: Path, book_root: Path = ROOT) -> str:
        """The Colab URL of ``notebook`` (a path inside the book)."""
        rel = Path(notebook).resolve().relative_to(Path(book_root).resolve()).as_posix()
        path_in_repo = posixpath.normpath(posixpath.join(self.path_to_book or ".", rel))
        return f"{self.colab_url}/github/{self.org}/{self.repo}/blob/{self.branch}/{path_in_repo}"


def read_config(book_root: Path = ROOT) -> BookConfig:
    """Parse ``_config.yml`` under ``book_root``."""
    config = yaml.safe_load((Path(book_root) / "_config.yml").read_text(encoding="utf-8"))
    repository = config.get("repository") or {}
    url = str(repository.get("url", "")).strip().rstrip("/")
    url = url[: -len(".git")] if url.endswith(".git") else url
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+)", url)
    if not match:
        raise SystemExit(f"_config.yml: repository.url must be https://github.com/<org>/<repo>, got {url!r}")
    branch = str(repository.get("branch", "")).strip()
    if not branch:
        raise SystemExit("_config.yml: repository.branch is not set")
    path_to_book = str(repository.get("path_to_book", "") or "").strip().strip("/")
    path_to_book = "" if path_to_book in ("", ".") else posixpath.normpath(path_to_book)
    colab_url = str((config.get("launch_buttons") or {}).get("colab_url", "")).strip().rstrip("/")
    if not colab_url:
        raise SystemExit("_config.yml: launch_buttons.colab_url is not set")
    return BookConfig(url, branch, path_to_book, colab_url, match.group(1), match.group(2))


def badge_markdown(cfg: BookConfig, notebook: Path, book_root: Path = ROOT) -> str:
    """The badge line for ``notebook``, with the image path relative to the notebook."""
    image = Path(book_root).resolve() / BADGE_IMAGE
    rel_image = Path(posixpath.relpath(image.as_posix(), Path(notebook).resolve().parent.as_posix()))
    return f"[![{BADGE_ALT}]({rel_image.as_posix()})]({cfg.colab_link(notebook, book_root)})"


# Notebook code lines are at most this long (tests/test_book.py checks every code cell, this one too).
MAX_CODE_LINE = 79


def _string_literal_lines(text: str, indent: int, closing: str = "") -> str:
    """``text`` as a Python string literal, split into adjacent literals (which Python joins) on
    lines of ``indent`` spaces so that none, with ``closing`` after the last, exceeds MAX_CODE_LINE."""
    width = max(MAX_CODE_LINE - indent - 2 - len(closing), 8)
    pieces = [text[i:i + width] for i in range(0, len(text), width)] or [""]
    lines = [" " * indent + '"' + piece + '"' for piece in pieces]
    lines[-1] += closing
    return "\n".join(lines)


def setup_source(cfg: BookConfig) -> str:
    """The canonical setup cell (every line at most MAX_CODE_LINE characters)."""
    default = _string_literal_lines(cfg.install_source, indent=8, closing=")")
    return f'''{SETUP_MARKER}
# Installs nodelib only if it is missing (e.g. on Colab), picks the device,
# pins CPU threads, seeds every RNG.
import importlib.util, os, subprocess, sys

if importlib.util.find_spec("nodelib") is None:
    NODELIB_SOURCE = os.environ.get(
        "NODELIB_SOURCE",
{default}
    subprocess.check_call(
        [sys.executable, "-m", "pip", "install", "-q", NODELIB_SOURCE])
    importlib.invalidate_caches()

import random

import numpy as np
import torch

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# One CPU thread: the tensors are small, and on a shared 2-core machine a
# second thread only spins against the first (and every chapter is timed
# alike, whatever OMP_NUM_THREADS the caller set).
torch.set_num_threads(1)
SEED = 0
random.seed(SEED)
np.random.seed(SEED)
torch.manual_seed(SEED)
torch.cuda.manual_seed_all(SEED)
print(f"device = {{device}}, SEED = {{SEED}}")'''


def is_setup_cell(cell) -> bool:
    """The stamped setup cell, or a hand-written one that installs nodelib on demand."""
    if cell.cell_type != "code":
        return False
    source = cell.source.lstrip()
    return source.startswith(SETUP_MARKER) or (
        "NODELIB_SOURCE" in source and 'find_spec("nodelib")' in source.replace("'", '"')
    )


def _stamp_badge(cell, badge: str) -> None:
    lines = cell.source.split("\n")
    badge_rows = [i for i, line in enumerate(lines) if _BADGE_LINE.search(line)]
    if badge_rows:
        first = badge_rows[0]
        lines = [line for i, line in enumerate(lines) if i == first or i not in badge_rows]
        lines[first] = badge
    else:
        objectives = next((i for i, line in enumerate(lines) if _OBJECTIVES_LINE.match(line)), None)
        if objectives is None:
            while lines and not lines[-1].strip():
                lines.pop()
            lines += ["", badge]
        else:
            before, after = lines[:objectives], lines[objectives:]
            while before and not before[-1].strip():
                before.pop()
            lines = before + (["", badge, ""] if before else [badge, ""]) + after
    cell.source = "\n".join(lines)


def _stamp_setup(nb, source: str) -> None:
    cells = nb.cells
    existing = [i for i, cell in enumerate(cells) if is_setup_cell(cell)]
    if existing:
        cell = cells[existing[0]]
        # keep only one setup cell
        for i in reversed(existing[1:]):
            del cells[i]
        del cells[existing[0]]
        cell.source = source
    else:
        cell = nbformat.v4.new_code_cell(source)
        if nb.nbformat_minor >= 5:
            ids = {c.get("id") for c in cells}
            cell["id"] = SETUP_CELL_ID if SETUP_CELL_ID not in ids else cell.get("id")
        else:
            cell.pop("id", None)
    tags = cell.metadata.setdefault("tags", [])
    if SETUP_TAG not in tags:
        tags.append(SETUP_TAG)
    first_code = next((i for i, c in enumerate(cells) if c.cell_type == "code"), len(cells))
    cells.insert(first_code, cell)


def stamp(nb, cfg: BookConfig, notebook: Path, book_root: Path = ROOT):
    """Return a stamped copy of ``nb`` (the notebook node read from ``notebook``)."""
    nb = copy.deepcopy(nb)
    first_md = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    if first_md is None:
        first_md = nbformat.v4.new_markdown_cell("")
        if nb.nbformat_minor < 5:
            first_md.pop("id", None)
        nb.cells.insert(0, first_md)
    _stamp_badge(first_md, badge_markdown(cfg, notebook, book_root))
    _stamp_setup(nb, setup_source(cfg))
    return nb


def chapter_notebooks(book_root: Path = ROOT) -> list[Path]:
    return sorted((Path(book_root) / "chapters").glob("*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: chapters/*.ipynb")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if any notebook is out of sync")
    args = parser.parse_args(argv)

    cfg = read_config(ROOT)
    notebooks = args.notebooks or chapter_notebooks(ROOT)
    out_of_sync = []
    for path in notebooks:
        path = path.resolve()
        nb = nbformat.read(path, as_version=4)
        stamped = stamp(nb, cfg, path, ROOT)
        if stamped == nb:
            continue
        out_of_sync.append(path)
        if not args.check:
            nbformat.validate(stamped)
            nbformat.write(stamped, path)
            print(f"stamped {path.relative_to(ROOT)}")

    if args.check:
        if out_of_sync:
            print("Out of sync with _config.yml (run `python tools/sync_colab.py`):")
            for path in out_of_sync:
                print(f"  {path.relative_to(ROOT)}")
            return 1
        print(f"{len(notebooks)} notebook(s) in sync with _config.yml")
    elif not out_of_sync:
        print(f"{len(notebooks)} notebook(s) already in sync")
    else:
        print("Re-execute the stamped notebooks so they are committed with outputs:\n"
              "  make outputs NB=chapters/NN_slug.ipynb")
    return 0


if __name__ == "__main__":
    sys.exit(main())
