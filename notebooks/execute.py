"""Re-execute dlcore's notebooks top to bottom and write their outputs into them, in place.

    pip install -e ".[notebooks]"            # nbclient, nbformat, ipykernel
    python notebooks/execute.py              # every notebook in notebooks/
    python notebooks/execute.py notebooks/graphs.ipynb ...   # some of them

Each notebook runs in a fresh Jupyter kernel whose working directory is a new temporary folder
(what a notebook writes under ./runs is thrown away), with the progress bar off. The outputs are
committed with the notebook, so its figures show on the repository's page; tests/test_notebooks.py
executes every notebook again and refuses one whose committed outputs are missing, hold an error,
or were made from other code than the notebook now holds (metadata.dlcore.code_sha256, written
here).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CELL_TIMEOUT = 600  # seconds for one cell


def code_digest(cells: list) -> str:
    """SHA-256 of the notebook's code cells' sources, in order: what the outputs were made from."""
    h = hashlib.sha256()
    for cell in cells:
        if cell["cell_type"] == "code":
            source = cell["source"]
            h.update(("".join(source) if isinstance(source, list) else source).encode("utf-8"))
            h.update(b"\0")
    return h.hexdigest()


def execute(path: Path) -> float:
    """Run one notebook in a fresh kernel and write it back with its outputs; returns seconds."""
    import nbformat
    from nbclient import NotebookClient
    from nbformat.validator import normalize
    nb = nbformat.from_dict(normalize(nbformat.read(path, as_version=4))[1])  # cell ids
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dlcore-notebook-") as cwd:
        env_before = os.environ.get("DLCORE_PROGRESS")
        os.environ["DLCORE_PROGRESS"] = "off"  # the kernel inherits this process's environment
        try:
            NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3", record_timing=False,
                           resources={"metadata": {"path": cwd}}).execute()
        finally:
            if env_before is None:
                os.environ.pop("DLCORE_PROGRESS", None)
            else:
                os.environ["DLCORE_PROGRESS"] = env_before
    nb.metadata["dlcore"] = {"code_sha256": code_digest(nb.cells)}
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to execute (default: every notebooks/*.ipynb)")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(HERE.glob("*.ipynb"))
    for path in paths:
        seconds = execute(path)
        print(f"{path}: {seconds:.0f} s, {path.stat().st_size / 1024:.0f} KiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
