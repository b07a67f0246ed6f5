#!/usr/bin/env python
"""Execute chapter notebooks in place and stamp them with the nodelib that produced their outputs.

Notebooks are committed with their outputs, and the book is built from those outputs without
executing anything. So the outputs must come from the nodelib that is committed beside them:
this script executes a notebook top to bottom (one fresh kernel of this interpreter, working
directory ``chapters/``) and writes into its metadata

    "nodelib_outputs": {"nodelib_sha256": <hash of nodelib/**/*.py>, "execution_s": <wall time>}

``tests/test_book.py`` fails when a chapter's stamp differs from the hash of the current tree
(``nodelib_source_hash`` below), i.e. when nodelib changed after the outputs were made.

Usage::

    python tools/outputs.py                              # every chapters/*.ipynb  (make outputs)
    python tools/outputs.py chapters/08_learning_dynamics.ipynb   (make outputs NB=...)
    python tools/outputs.py --check                      # list notebooks with a stale stamp
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAMP_KEY = "nodelib_outputs"
CELL_TIMEOUT_S = 600


def nodelib_source_hash(root: Path = ROOT) -> str:
    """SHA-256 over every ``nodelib/**/*.py``: relative path and bytes, in sorted order."""
    digest = hashlib.sha256()
    package = root / "nodelib"
    for path in sorted(package.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def stamp_of(nb) -> str | None:
    """The nodelib hash a notebook's outputs were produced with (None if never stamped)."""
    return (nb.metadata.get(STAMP_KEY) or {}).get("nodelib_sha256")


def execute(path: Path) -> float:
    """Execute ``path`` in place, stamp it, and return the wall time in seconds."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    source_hash = nodelib_source_hash()
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    if nodelib_source_hash() != source_hash:
        raise SystemExit(f"{path.name}: nodelib/ changed while the notebook ran; run it again")
    nb.metadata[STAMP_KEY] = {"nodelib_sha256": source_hash, "execution_s": round(elapsed, 1)}
    nbformat.write(nb, path)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: chapters/*.ipynb")
    parser.add_argument("--check", action="store_true",
                        help="execute nothing; exit 1 if any notebook's stamp is stale")
    args = parser.parse_args(argv)
    notebooks = [p.resolve() for p in args.notebooks] or sorted((ROOT / "chapters").glob("*.ipynb"))

    if args.check:
        import nbformat

        current = nodelib_source_hash()
        stale = [p for p in notebooks if stamp_of(nbformat.read(p, as_version=4)) != current]
        for p in stale:
            print(f"stale outputs: {p.relative_to(ROOT)}  (run `make outputs NB={p.relative_to(ROOT)}`)")
        print(f"{len(notebooks) - len(stale)} of {len(notebooks)} notebook(s) stamped with the "
              f"current nodelib ({current[:12]})")
        return 1 if stale else 0

    for path in notebooks:
        print(f"executing {path.relative_to(ROOT)} ...", flush=True)
        elapsed = execute(path)
        print(f"  {elapsed:6.1f} s  stamped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
