"""Progress for long loops: a live bar for a reader, one summary line in a built book.

``progress(iterable, desc="train")`` iterates like ``tqdm``. Where a live bar can be drawn — a
notebook front end with ipywidgets (Colab, JupyterLab) or a terminal — it *is* a ``tqdm.auto``
bar. Where it cannot — a notebook executed headless by the book build or nbval, whose stderr
would fill the page with dozens of "0%| | 0/6" fragments — nothing is drawn while the loop runs
and one line is printed when it ends::

    train: 200/200 in 12.3 s (loss=0.0123)

``NODELIB_PROGRESS=live`` or ``=summary`` forces either behaviour.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time


def _live_bars_possible() -> bool:
    choice = os.environ.get("NODELIB_PROGRESS", "").lower()
    if choice in ("live", "summary"):
        return choice == "live"
    if "ipykernel" in sys.modules:   # in a notebook: a widget bar needs ipywidgets
        return importlib.util.find_spec("ipywidgets") is not None
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class _Summary:
    """The quiet stand-in for a tqdm bar: counts, keeps the postfix, prints one line at the end."""

    def __init__(self, iterable=None, desc: str = "", total: int | None = None, **_):
        self.iterable, self.desc = iterable, desc
        self.total = total if total is not None else _len_or_none(iterable)
        self.n, self.postfix, self._start, self._closed = 0, "", time.perf_counter(), False

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.n += 1
        finally:
            self.close()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = dict(ordered_dict or {}, **kwargs)
        self.postfix = ", ".join(f"{k}={_fmt(v)}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = str(s)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        extra = f" ({self.postfix})" if self.postfix else ""
        label = f"{self.desc}: " if self.desc else ""
        print(f"{label}{count} in {time.perf_counter() - self._start:.1f} s{extra}")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(iterable=None, *, desc: str = "", total: int | None = None, **tqdm_kwargs):
    """A ``tqdm.auto`` bar where one can be drawn live, else a one-line summary (see module)."""
    if _live_bars_possible():
        from tqdm.auto import tqdm
        return tqdm(iterable, desc=desc, total=total, **tqdm_kwargs)
    return _Summary(iterable, desc=desc, total=total)


def _len_or_none(iterable):
    try:
        return len(iterable)
    except TypeError:
        return None


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
