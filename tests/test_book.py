"""Checks of the book: table of contents, chapter notebooks, Colab badge and setup cell.

The repository facts (URL, branch, Colab base URL) are parsed from ``_config.yml`` here, in the
test, independently of ``tools/sync_colab.py``: nothing about them is hard-coded.

Parametrised tests have one case per ``chapters/*.ipynb``; with no chapters they have no cases,
and ``test_toc_and_chapters_agree`` still checks the table of contents.
"""

from __future__ import annotations

import ast
import os
import posixpath
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import outputs  # noqa: E402  (tools/ is not a package)
import sync_colab  # noqa: E402
from browser_check import RAW_PROGRESS, raw_progress_lines  # noqa: E402

NOTEBOOKS = sorted((ROOT / "chapters").glob("*.ipynb"))
ALLOWED_THIRD_PARTY = {"torch", "numpy", "scipy", "matplotlib", "sympy", "sklearn", "tqdm",
                       "nodelib", "IPython", "statsmodels"}   # statsmodels: preinstalled on Colab
STDLIB = set(sys.stdlib_module_names)
SETUP_MARKER = "# --- setup (stamped by tools/sync_colab.py) ---"
# Code lines are at most this long: the book's column at a 1400 px window holds about 87
# characters of code, about 79 inside an admonition or a solution dropdown (measured by
# tools/browser_check.py); 79 is also PEP 8's limit. No exceptions: the one line that used to need
# one, the setup cell's install URL, is split by tools/sync_colab.py.
MAX_CODE_LINE = 79


# --------------------------------------------------------------------------- helpers
def book_config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


def repo_facts() -> dict:
    """org, repo, branch, url, colab base and path_to_book, parsed from _config.yml."""
    cfg = book_config()
    url = cfg["repository"]["url"].rstrip("/")
    url = url[:-4] if url.endswith(".git") else url
    m = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+)", url)
    assert m, f"repository.url in _config.yml is not a GitHub URL: {url!r}"
    book = str(cfg["repository"].get("path_to_book", "") or "").strip("/")
    return {
        "url": url,
        "org": m.group(1),
        "repo": m.group(2),
        "branch": str(cfg["repository"]["branch"]),
        "colab": cfg["launch_buttons"]["colab_url"].rstrip("/"),
        "path_to_book": "" if book in ("", ".") else book,
    }


def expected_colab_url(nb_path: Path) -> str:
    f = repo_facts()
    rel = posixpath.normpath(posixpath.join(f["path_to_book"] or ".",
                                            nb_path.relative_to(ROOT).as_posix()))
    return f"{f['colab']}/github/{f['org']}/{f['repo']}/blob/{f['branch']}/{rel}"


def toc_files() -> list[str]:
    """Every ``file`` (and the root) listed in _toc.yml, in order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    found = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                found.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return found


def resolve_doc(name: str) -> Path | None:
    path = ROOT / name
    if path.suffix and path.exists():
        return path
    for suffix in (".ipynb", ".md"):
        if path.with_suffix(suffix).exists():
            return path.with_suffix(suffix)
    return None


def read(nb_path: Path):
    return nbformat.read(nb_path, as_version=4)


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def markdown_text(nb) -> str:
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def python_source(cell_source: str) -> str:
    """Cell source with IPython magics / shell escapes blanked out so that ``ast`` can parse it."""
    lines = []
    for line in cell_source.split("\n"):
        stripped = line.lstrip()
        lines.append("" if stripped.startswith(("%", "!")) or stripped.endswith("?") else line)
    return "\n".join(lines)


def setup_cell(nb):
    cells = code_cells(nb)
    assert cells, "notebook has no code cell"
    return cells[0]


nb_params = pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])


# --------------------------------------------------------------------------- the book
def test_toc_and_chapters_agree():
    listed = toc_files()
    missing = [name for name in listed if resolve_doc(name) is None]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"
    in_toc = {resolve_doc(name).resolve() for name in listed}
    not_listed = [p.relative_to(ROOT).as_posix() for p in NOTEBOOKS if p.resolve() not in in_toc]
    assert not not_listed, f"chapter notebooks missing from _toc.yml: {not_listed}"
    assert len(listed) == len(set(listed)), "a file is listed twice in _toc.yml"


def test_config_builds_offline_and_strict():
    cfg = book_config()
    execute = cfg["execute"]
    # built from the committed outputs, which test_outputs_come_from_this_nodelib keeps honest
    assert execute["execute_notebooks"] == "off"
    assert execute["allow_errors"] is False
    assert cfg["only_build_toc_files"] is True
    extensions = cfg["sphinx"]["extra_extensions"]
    for ext in ("sphinx_proof", "sphinx_exercise", "sphinx-mathjax-offline"):
        assert ext in extensions
    assert {"amsmath", "dollarmath"} <= set(cfg["parse"]["myst_enable_extensions"])
    assert not cfg["launch_buttons"].get("thebe"), "thebe loads JavaScript from a CDN"
    assert cfg["bibtex_bibfiles"] == ["references.bib"]
    assert (ROOT / "references.bib").exists()
    assert (ROOT / sync_colab.BADGE_IMAGE).exists()


# --------------------------------------------------------------------------- each chapter
@nb_params
def test_badge_matches_config(nb_path):
    nb = read(nb_path)
    first_md = next(c for c in nb.cells if c.cell_type == "markdown")
    assert first_md.source.lstrip().startswith("# "), "first markdown cell must start with '# Title'"
    badges = re.findall(r"\[!\[Open in Colab\]\(([^)]*)\)\]\(([^)]*)\)", first_md.source)
    assert len(badges) == 1, "the first markdown cell needs exactly one Open-in-Colab badge"
    image, link = badges[0]
    assert link == expected_colab_url(nb_path)
    assert (nb_path.parent / image).resolve() == (ROOT / "images" / "colab-badge.svg").resolve()


@nb_params
def test_setup_cell_matches_config(nb_path):
    cell = setup_cell(read(nb_path))
    assert cell.source.startswith(SETUP_MARKER), "the first code cell must be the setup cell"
    assert "hide-cell" in cell.metadata.get("tags", [])

    tree = ast.parse(cell.source)
    facts = repo_facts()
    defaults = [
        node.args[1].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "os.environ.get"
        and len(node.args) == 2 and isinstance(node.args[0], ast.Constant)
        and node.args[0].value == "NODELIB_SOURCE"
    ]
    assert defaults == [f"git+{facts['url']}@{facts['branch']}"]
    calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert {"importlib.util.find_spec", "subprocess.check_call", "random.seed", "np.random.seed",
            "torch.manual_seed", "torch.cuda.manual_seed_all",
            "torch.cuda.is_available"} <= calls
    install = next(node for node in ast.walk(tree) if isinstance(node, ast.Call)
                   and ast.unparse(node.func) == "subprocess.check_call")
    assert ast.unparse(install.args[0]) == \
        "[sys.executable, '-m', 'pip', 'install', '-q', NODELIB_SOURCE]"
    # ... and it is exactly what tools/sync_colab.py stamps.
    assert cell.source == sync_colab.setup_source(sync_colab.read_config(ROOT))


@nb_params
def test_notebook_in_sync_with_sync_colab(nb_path):
    nb = read(nb_path)
    stamped = sync_colab.stamp(nb, sync_colab.read_config(ROOT), nb_path, ROOT)
    assert stamped == nb, "run `python tools/sync_colab.py` and re-execute the notebook"


@nb_params
def test_imports_only_what_colab_has(nb_path):
    nb = read(nb_path)
    bad = []
    for i, cell in enumerate(code_cells(nb)):
        for line in cell.source.split("\n"):
            if re.match(r"\s*[!%]+\s*(pip|conda|apt|wget|curl)\b", line):
                bad.append(f"code cell {i}: installs/downloads at run time: {line.strip()!r}")
        tree = ast.parse(python_source(cell.source))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in ALLOWED_THIRD_PARTY and top not in STDLIB:
                    bad.append(f"code cell {i}: imports {name}")
    assert not bad, "\n".join(bad)


@nb_params
def test_chapter_shape(nb_path):
    nb = read(nb_path)
    md = markdown_text(nb)
    assert re.search(r"^\s*(#+|\*\*)\s*Learning objectives", md, re.I | re.M), \
        "no 'Learning objectives' section"
    asserts = sum(isinstance(node, ast.Assert)
                  for cell in code_cells(nb)
                  for node in ast.walk(ast.parse(python_source(cell.source))))
    assert asserts >= 1, "a chapter checks its claims with at least one assert"
    exercises = re.findall(r"^(?:`{3,}|:{3,})\{exercise\}", md, re.M)
    assert exercises, "no ```{exercise} directive"
    solutions = re.findall(r"^(?:`{3,}|:{3,})\{solution\}[^\n]*\n((?:[ \t]*:[^\n]*\n)*)", md, re.M)
    assert solutions, "no ```{solution} directive"
    for options in solutions:
        assert re.search(r":class:\s*dropdown", options), "solutions go in dropdowns (:class: dropdown)"


@nb_params
def test_committed_with_outputs(nb_path):
    nb = read(nb_path)
    cells = [c for c in code_cells(nb) if c.source.strip()]
    counts = [c.execution_count for c in cells]
    unexecuted = [i for i, n in enumerate(counts) if n is None]
    assert not unexecuted, (f"code cells {unexecuted} have no outputs; execute with "
                            f"`make outputs NB=chapters/{nb_path.name}`")
    assert counts == sorted(counts) and len(set(counts)) == len(counts), \
        "cells were not executed top to bottom in one kernel"
    assert any(c.outputs for c in cells), "notebook is committed without outputs"
    errors = [i for i, c in enumerate(cells) if any(o.output_type == "error" for o in c.outputs)]
    assert not errors, f"code cells {errors} are committed with an error output"


@nb_params
def test_outputs_come_from_this_nodelib(nb_path):
    """The book shows the committed outputs, so they must come from the committed nodelib:
    tools/outputs.py stamps a hash of nodelib/ when it executes a notebook."""
    stamp = outputs.stamp_of(read(nb_path))
    assert stamp == outputs.nodelib_source_hash(ROOT), (
        f"{nb_path.name}'s outputs were produced by another nodelib (stamp {str(stamp)[:12]}); "
        f"re-execute it: `make outputs NB=chapters/{nb_path.name}`")


def test_stamp_hash_follows_the_source(tmp_path):
    """The stamp changes with any byte of any module, and only with nodelib's sources."""
    (tmp_path / "nodelib" / "sub").mkdir(parents=True)
    (tmp_path / "nodelib" / "a.py").write_text("x = 1\n")
    (tmp_path / "nodelib" / "sub" / "b.py").write_text("y = 2\n")
    first = outputs.nodelib_source_hash(tmp_path)
    (tmp_path / "nodelib" / "__pycache__").mkdir()
    (tmp_path / "nodelib" / "__pycache__" / "a.cpython-311.py").write_text("junk")
    (tmp_path / "README.md").write_text("not nodelib")
    assert outputs.nodelib_source_hash(tmp_path) == first
    (tmp_path / "nodelib" / "sub" / "b.py").write_text("y = 3\n")
    assert outputs.nodelib_source_hash(tmp_path) != first
    (tmp_path / "nodelib" / "sub" / "b.py").write_text("y = 2\n")
    (tmp_path / "nodelib" / "sub" / "b.py").rename(tmp_path / "nodelib" / "b.py")
    assert outputs.nodelib_source_hash(tmp_path) != first  # a move is a change


@nb_params
def test_setup_cell_pins_cpu_threads(nb_path):
    """Every chapter runs on one CPU thread, so its time does not depend on the caller's
    OMP_NUM_THREADS or on other work sharing a small machine."""
    tree = ast.parse(setup_cell(read(nb_path)).source)
    pins = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and ast.unparse(node.func) == "torch.set_num_threads"]
    assert [ast.unparse(node.args[0]) for node in pins] == ["1"]


# A solution "states a number" when it has a decimal, a number of two or more digits, or a
# percentage; single digits ("two layers", $h_1$) do not count.
STATES_A_NUMBER = re.compile(r"\d\.\d|\d{2,}|\d\s*%")
SOLUTION = re.compile(r"^(`{3,}|:{3,})\{solution\}[ \t]*(\S+)[^\n]*\n(.*?)^\1[ \t]*$", re.S | re.M)
CHECK_LINE = re.compile(r"^# check: (\S+)\s*$")


def unchecked_solutions(nb) -> list[str]:
    """Solutions that state a number but have no check cell of their own: a code cell, hidden in
    the book, whose first line is ``# check: <exercise label>`` and which asserts something,
    among the code cells right after the markdown cell that holds the solution."""
    problems = []
    cells = nb.cells
    for i, cell in enumerate(cells):
        if cell.cell_type != "markdown":
            continue
        following = []
        for nxt in cells[i + 1:]:
            if nxt.cell_type != "code":
                break
            following.append(nxt)
        checks = {}
        for code in following:
            m = CHECK_LINE.match(code.source.split("\n", 1)[0])
            if m:
                checks[m.group(1)] = code
        for m in SOLUTION.finditer(cell.source):
            label, body = m.group(2), m.group(3)
            if not STATES_A_NUMBER.search(body):
                continue
            code = checks.get(label)
            if code is None:
                problems.append(f"markdown cell {i}: the solution of {label} states numbers but no "
                                f"code cell after it starts with '# check: {label}'")
                continue
            tags = code.metadata.get("tags", [])
            has_assert = any(isinstance(node, ast.Assert)
                             for node in ast.walk(ast.parse(python_source(code.source))))
            if not has_assert:
                problems.append(f"check cell of {label}: asserts nothing")
            if not {"hide-cell", "remove-cell", "remove-input"} & set(tags):
                problems.append(f"check cell of {label}: not hidden in the book (tag it hide-cell)")
    return problems


@nb_params
def test_every_solution_with_numbers_has_a_check_cell(nb_path):
    problems = unchecked_solutions(read(nb_path))
    assert not problems, "\n".join(problems)


def test_unchecked_solutions_catches_a_missing_or_empty_check():
    md = nbformat.v4.new_markdown_cell(
        "```{exercise} Step\n:label: ex-a\nHow big?\n```\n\n"
        "```{solution} ex-a\n:class: dropdown\nAbout 0.25.\n```\n\n"
        "```{solution} ex-b\n:class: dropdown\nTwo layers.\n```")
    nb = nbformat.v4.new_notebook(cells=[md])
    assert len(unchecked_solutions(nb)) == 1  # ex-a states a number; ex-b does not
    check = nbformat.v4.new_code_cell("# check: ex-a\nassert abs(x - 0.25) < 1e-3")
    nb.cells.append(check)
    assert any("not hidden" in p for p in unchecked_solutions(nb))
    check.metadata["tags"] = ["hide-cell"]
    assert unchecked_solutions(nb) == []
    check.source = "# check: ex-a\nprint(x)"
    assert any("asserts nothing" in p for p in unchecked_solutions(nb))
    nb.cells.insert(1, nbformat.v4.new_markdown_cell("text between"))
    check.source = "# check: ex-a\nassert x"
    assert len(unchecked_solutions(nb)) == 1  # a check cell must follow its solution directly


def output_texts(cell):
    """The text a code cell's outputs show: streams, and every text/* representation."""
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            yield output.text
        for mime, value in output.get("data", {}).items():
            if mime.startswith("text/") or mime == "application/vnd.jupyter.widget-view+json":
                yield value if isinstance(value, str) else str(value)


@nb_params
def test_no_raw_progress_bar_in_outputs(nb_path):
    """A progress bar run headless leaves tqdm fragments in the outputs, which the book shows as
    text; chapters use nodelib.progress, which prints one summary line there instead."""
    bad = []
    for i, cell in enumerate(code_cells(read(nb_path))):
        lines = [line for text in output_texts(cell) for line in raw_progress_lines(text)]
        if lines:
            bad.append(f"code cell {i}: {len(lines)} line(s) of raw progress text, "
                       f"e.g. {lines[0][:70]!r}")
    assert not bad, ("use `from nodelib import progress` instead of tqdm and re-execute:\n"
                     + "\n".join(bad))


def fenced_code_lines(markdown: str) -> list[str]:
    """Lines inside fenced code blocks (```python, ```, ~~~) of a markdown cell. Directive fences
    (```{exercise}, :::{solution}) are containers, not code: their bodies are searched too."""
    fence = re.compile(r"^\s*(`{3,}|~{3,}|:{3,})\s*(\S*)")
    stack: list[tuple[str, bool]] = []  # (fence, is_code)
    lines = []
    for line in markdown.split("\n"):
        m = fence.match(line)
        closes = (m is not None and not m.group(2) and bool(stack)
                  and m.group(1)[0] == stack[-1][0][0] and len(m.group(1)) >= len(stack[-1][0]))
        if stack and stack[-1][1]:  # inside code: everything but the closing fence is code
            if closes:
                stack.pop()
            else:
                lines.append(line)
        elif closes:
            stack.pop()
        elif m:
            stack.append((m.group(1), m.group(1)[0] != ":" and not m.group(2).startswith("{")))
    return lines


def test_fenced_code_lines_helper():
    md = ("text\n```python\ncode 1\n```\n:::{solution} ex\n:class: dropdown\n"
          "~~~\ncode 2\n~~~\nprose\n:::\n````{exercise}\n```\ncode 3\n```\n````\n")
    assert fenced_code_lines(md) == ["code 1", "code 2", "code 3"]


@nb_params
def test_code_lines_fit_the_column(nb_path):
    long = [f"code cell {i}, line {n}: {len(line)} chars: {line[:60]!r}..."
            for i, cell in enumerate(code_cells(read(nb_path)))
            for n, line in enumerate(cell.source.split("\n"), start=1)
            if len(line) > MAX_CODE_LINE]
    assert not long, (f"{len(long)} code line(s) longer than {MAX_CODE_LINE} characters "
                      f"(the setup cell: run tools/sync_colab.py):\n" + "\n".join(long))


@nb_params
def test_markdown_code_lines_fit_the_column(nb_path):
    """Code shown in the prose (fenced blocks, e.g. in solutions) obeys the same limit."""
    nb = read(nb_path)
    long = [f"markdown cell {i}: {len(line)} chars: {line[:60]!r}..."
            for i, cell in enumerate(nb.cells) if cell.cell_type == "markdown"
            for line in fenced_code_lines(cell.source) if len(line) > MAX_CODE_LINE]
    assert not long, (f"{len(long)} fenced code line(s) longer than {MAX_CODE_LINE} "
                      f"characters:\n" + "\n".join(long))


def test_raw_progress_pattern_catches_real_tqdm_output():
    """RAW_PROGRESS (shared with tools/browser_check.py) against what tqdm really writes, and
    against prose and nodelib.progress's summary line, which it must not match."""
    import io
    import warnings

    from tqdm import TqdmWarning, tqdm

    def fragments(**kwargs) -> list[str]:
        sink = io.StringIO()
        bar = tqdm(file=sink, mininterval=0, miniters=1, **kwargs)
        for _ in range(kwargs.get("total") or 3):
            bar.update()
            bar.set_postfix(loss=0.125)
        bar.close()
        return [f for f in re.split(r"[\r\n]+", sink.getvalue()) if f.strip()]

    drawn = (fragments(total=6, desc="plain") + fragments(total=None, desc="no total")
             + fragments(total=2000, unit_scale=True) + fragments(total=3, ascii=True, ncols=60))
    assert len(drawn) >= 10
    missed = [f for f in drawn if not RAW_PROGRESS.search(f)]
    assert not missed, missed
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("IProgress not found. Please update jupyter and ipywidgets.", TqdmWarning)
    shown = warnings.formatwarning(caught[0].message, caught[0].category, "auto.py", 21)
    assert RAW_PROGRESS.search(shown)

    prose = ["50% of the steps were rejected", "a 3/6 split [see below]", "about 30 it/s",
             "it took 1.2 s/it on two cores", "| 50% | 3/6 |", "elapsed [00:01, 00:02]",
             "train: 200/200 in 12.3 s (loss=0.0123)", "density matching: 3600/3600 in 95.1 s"]
    assert [p for p in prose if RAW_PROGRESS.search(p)] == []


def test_setup_cell_fits_the_column_even_for_a_long_repository_url():
    import dataclasses

    cfg = sync_colab.read_config(ROOT)
    long_cfg = dataclasses.replace(
        cfg, repository_url="https://github.com/" + "o" * 50 + "/" + "r" * 60, branch="b" * 30)
    for c in (cfg, long_cfg):
        source = sync_colab.setup_source(c)
        assert max(len(line) for line in source.split("\n")) <= MAX_CODE_LINE
        defaults = [node.args[1].value for node in ast.walk(ast.parse(source))
                    if isinstance(node, ast.Call) and ast.unparse(node.func) == "os.environ.get"]
        assert defaults == [c.install_source]  # the split literal is still the one URL


# --------------------------------------------------------------------------- tools/sync_colab.py
def _toy_notebook(first_md: str, code: list[str]):
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(first_md))
    for src in code:
        cell = nbformat.v4.new_code_cell(src)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="kept\n")]
        cell.execution_count = 7
        nb.cells.append(cell)
    return nb


def test_sync_colab_stamps_badge_and_setup_cell():
    cfg = sync_colab.read_config(ROOT)
    path = ROOT / "chapters" / "99_toy.ipynb"  # never written: only used to compute links
    nb = _toy_notebook(
        "# Toy\n\nAbstract.\n\n[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        "(https://colab.research.google.com/github/someone/else/blob/dev/chapters/99_toy.ipynb)\n\n"
        "## Learning objectives\n\n- one",
        ["x = 1", "assert x == 1"],
    )
    stamped = sync_colab.stamp(nb, cfg, path, ROOT)
    md = stamped.cells[0].source
    assert md.count("Open in Colab") == 1 and "someone/else" not in md
    assert f"[![Open in Colab](../images/colab-badge.svg)]({expected_colab_url(path)})" in md
    assert md.index("Abstract.") < md.index("Open in Colab") < md.index("Learning objectives")
    setup = stamped.cells[1]
    assert setup.source.startswith(SETUP_MARKER) and "hide-cell" in setup.metadata["tags"]
    # other cells and their outputs are untouched
    assert stamped.cells[2:] == nb.cells[1:]
    # idempotent
    assert sync_colab.stamp(stamped, cfg, path, ROOT) == stamped


def test_sync_colab_replaces_stale_setup_cell_and_inserts_missing_badge():
    cfg = sync_colab.read_config(ROOT)
    path = ROOT / "chapters" / "99_toy.ipynb"
    stale = SETUP_MARKER + "\nprint('old')"
    nb = _toy_notebook("# Toy\n\nAbstract.\n\n**Learning objectives**\n\n- one", ["x = 1", stale])
    stamped = sync_colab.stamp(nb, cfg, path, ROOT)
    assert [c.cell_type for c in stamped.cells] == ["markdown", "code", "code"]
    setup = stamped.cells[1]
    assert setup.source == sync_colab.setup_source(cfg)
    assert setup.outputs == nb.cells[2].outputs  # outputs of the replaced cell are kept
    assert stamped.cells[2].source == "x = 1"
    md = stamped.cells[0].source.split("\n")
    badge = md.index(sync_colab.badge_markdown(cfg, path, ROOT))
    assert md[badge - 1] == "" and md[badge + 1] == "" and md[badge + 2] == "**Learning objectives**"


def test_sync_colab_replaces_hand_written_setup_cell():
    cfg = sync_colab.read_config(ROOT)
    path = ROOT / "chapters" / "99_toy.ipynb"
    hand_written = ('# Setup\nimport importlib.util, os\nif importlib.util.find_spec("nodelib") is None:\n'
                    '    src = os.environ.get("NODELIB_SOURCE", "git+https://example.org/x@dev")')
    nb = _toy_notebook("# Toy\n\n**Learning objectives**", [hand_written, "y = 2"])
    stamped = sync_colab.stamp(nb, cfg, path, ROOT)
    setups = [c for c in stamped.cells if c.cell_type == "code" and "NODELIB_SOURCE" in c.source]
    assert len(setups) == 1 and setups[0].source == sync_colab.setup_source(cfg)
    assert [c.source for c in stamped.cells[2:]] == ["y = 2"]


def test_sync_colab_check_mode():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "sync_colab.py"), "--check"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- the install path
def _copy_source_tree(dest: Path) -> Path:
    """Copy what a clone would contain (tracked + untracked-but-not-ignored files) to ``dest``,
    so that pip builds there and leaves no build/ or *.egg-info in the working tree."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=ROOT, capture_output=True, check=True).stdout
        files = [f for f in listed.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = []
    if files:
        for rel in files:
            src = ROOT / rel
            if src.is_file():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / rel)
    else:
        shutil.copytree(ROOT, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            ".git", ".venv", "venv", "_build", "build", "*.egg-info", "__pycache__",
            ".ipynb_checkpoints", ".pytest_cache"))
    return dest


def _shadow_site_packages(dest: Path) -> Path:
    """A directory of symlinks to this environment's site-packages, minus anything nodelib.

    A ``.pth`` file pointing at it makes torch, numpy, ... importable in a fresh venv without
    reinstalling them; ``.pth`` files inside it (e.g. nodelib's editable-install hook) are not
    processed because it is added as a plain path, and nodelib entries are left out in case
    nodelib was installed non-editable here.
    """
    dest.mkdir()
    for site_dir in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        for entry in Path(site_dir).iterdir():
            if "nodelib" in entry.name.lower() or entry.suffix == ".pth":
                continue
            if not (dest / entry.name).exists():
                (dest / entry.name).symlink_to(entry)
    return dest


@pytest.mark.install
@pytest.mark.skipif(os.environ.get("NODELIB_SKIP_INSTALL_TEST") == "1",
                    reason="NODELIB_SKIP_INSTALL_TEST=1")
def test_setup_cell_installs_nodelib_into_fresh_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "CONDA_"))}
    env["PYTHONNOUSERSITE"] = "1"
    work = tmp_path / "work"  # cwd: not the repository, so nodelib cannot come from the cwd
    work.mkdir()

    def run(*args, **kw):
        return subprocess.run([str(python), *args], cwd=work, env=env, capture_output=True,
                              text=True, **kw)

    fresh_site = Path(run("-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
                      .stdout.strip())
    shadow = _shadow_site_packages(tmp_path / "project-site")
    (fresh_site / "zz_project_site.pth").write_text(f"{shadow}\n")

    # 1. The fresh venv sees torch & co. but not nodelib.
    probe = run("-c", "import importlib.util, torch, numpy; "
                      "print(importlib.util.find_spec('nodelib') is None)")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "True", "nodelib is importable before the setup cell ran"

    # 2. The setup cell, told to install from a local copy of this repository, installs it.
    source = _copy_source_tree(tmp_path / "src")
    env["NODELIB_SOURCE"] = str(source)
    script = work / "setup_cell.py"
    script.write_text(sync_colab.setup_source(sync_colab.read_config(ROOT))
                      + "\nimport nodelib\nprint('NODELIB_FILE=' + nodelib.__file__)\n")
    result = run(str(script), timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "device = " in result.stdout
    nodelib_file = Path(re.search(r"NODELIB_FILE=(.*)", result.stdout).group(1)).resolve()
    assert nodelib_file.is_relative_to(fresh_site.resolve()), nodelib_file

    # 3. A second run finds nodelib and does not install again (a bad source would fail otherwise).
    env["NODELIB_SOURCE"] = str(tmp_path / "does-not-exist")
    again = run(str(script), timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
