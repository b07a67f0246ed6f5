"""nodelib.progress: a live tqdm bar where one can be drawn, else exactly one summary line.

The summary line must also be clean for the book: tools/browser_check.py and tests/test_book.py
fail a page or a notebook on raw tqdm text (``RAW_PROGRESS``), so the line is checked against that
pattern too.
"""

from __future__ import annotations

import importlib.util
import io
import re
import sys
from pathlib import Path

import pytest
from tqdm import tqdm as std_tqdm

from nodelib import progress

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from browser_check import RAW_PROGRESS  # noqa: E402  (tools/ is not a package)

SECONDS = r"\d+\.\d s"  # the elapsed time, one decimal


@pytest.fixture
def summary_mode(monkeypatch):
    monkeypatch.setenv("NODELIB_PROGRESS", "summary")


def printed_lines(capsys) -> list[str]:
    out, err = capsys.readouterr()
    assert err == "", "the summary goes to stdout; nothing may reach stderr"
    return out.splitlines()


def test_iteration_yields_every_item_and_prints_one_line(summary_mode, capsys):
    items = ["a", "b", "c", "d", "e"]
    seen = [x for x in progress(items, desc="train")]
    assert seen == items
    lines = printed_lines(capsys)
    assert len(lines) == 1, lines
    assert re.fullmatch(rf"train: 5/5 in {SECONDS}", lines[0]), lines[0]
    assert not RAW_PROGRESS.search(lines[0])


def test_nothing_is_printed_before_the_loop_ends(summary_mode, capsys):
    for i, _ in enumerate(progress(range(3), desc="quiet")):
        assert capsys.readouterr() == ("", ""), f"printed during iteration {i}"
    assert len(printed_lines(capsys)) == 1


def test_iterable_without_length_prints_count_only(summary_mode, capsys):
    def gen():
        yield from range(4)

    assert list(progress(gen(), desc="gen")) == [0, 1, 2, 3]
    assert re.fullmatch(rf"gen: 4 in {SECONDS}", printed_lines(capsys)[0])


def test_total_overrides_length_and_no_desc_has_no_label(summary_mode, capsys):
    assert list(progress(range(3), total=10)) == [0, 1, 2]
    assert re.fullmatch(rf"3/10 in {SECONDS}", printed_lines(capsys)[0])


def test_context_manager_with_update_and_postfix(summary_mode, capsys):
    with progress(total=6, desc="fit") as bar:
        for step in range(3):
            bar.update(2)
            bar.set_postfix(loss=1.0 / (step + 1), step=step)
        assert capsys.readouterr().out == "", "printed before the bar was closed"
    lines = printed_lines(capsys)
    assert len(lines) == 1, lines
    # floats are shown with 4 significant digits, other values as str(); the last postfix wins
    assert re.fullmatch(rf"fit: 6/6 in {SECONDS} \(loss=0\.3333, step=2\)", lines[0]), lines[0]
    assert not RAW_PROGRESS.search(lines[0])


def test_set_postfix_accepts_a_mapping_and_keywords(summary_mode, capsys):
    with progress(total=1, desc="d") as bar:
        bar.update()
        bar.set_postfix({"a": 1}, b="x")
    assert printed_lines(capsys)[0].endswith("(a=1, b=x)")


def test_close_is_idempotent(summary_mode, capsys):
    bar = progress(total=2, desc="twice")
    bar.update(2)
    bar.close()
    bar.close()
    with bar:
        pass
    assert len(printed_lines(capsys)) == 1


def test_live_mode_gives_a_tqdm_bar(monkeypatch, capsys):
    monkeypatch.setenv("NODELIB_PROGRESS", "live")
    sink = io.StringIO()
    bar = progress(range(3), desc="live", file=sink)  # extra keywords go to tqdm
    try:
        assert isinstance(bar, std_tqdm)
        assert list(bar) == [0, 1, 2]
    finally:
        bar.close()
    assert "3/3" in sink.getvalue()  # tqdm drew its own bar into `file`
    assert capsys.readouterr().out == ""  # and no summary line was printed


def test_headless_default_is_summary(monkeypatch, capsys):
    # pytest (like nbconvert/nbval) runs without a terminal on stderr and outside ipykernel
    monkeypatch.delenv("NODELIB_PROGRESS", raising=False)
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not isinstance(progress(range(2)), std_tqdm)


def test_in_a_kernel_live_bars_need_ipywidgets(monkeypatch):
    monkeypatch.delenv("NODELIB_PROGRESS", raising=False)
    monkeypatch.setitem(sys.modules, "ipykernel", sys)  # any module object: "we are in a kernel"
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        if name == "ipywidgets":
            return widgets_spec
        return real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    widgets_spec = None  # no ipywidgets: tqdm.auto would warn "IProgress not found"
    assert not isinstance(progress(range(2)), std_tqdm)
    widgets_spec = object()  # ipywidgets present (Colab, JupyterLab): a live bar
    bar = progress(range(2), file=io.StringIO())
    try:
        assert isinstance(bar, std_tqdm)
    finally:
        bar.close()
