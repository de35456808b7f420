"""Every notebook in notebooks/ runs top to bottom (code cells executed in order, one namespace),
and is committed with the outputs of that code: `python notebooks/execute.py` writes them."""
import hashlib
import json
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
# a notebook per family (README, "Notebooks")
FAMILIES = ("quickstart", "meta_learning", "reinforcement_learning", "transformers",
            "without_labels", "graphs", "trust_and_reuse")
RERUN = "run `python notebooks/execute.py` to re-execute it and write its outputs"


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _code_digest(cells: list) -> str:  # as notebooks/execute.py computes it
    h = hashlib.sha256()
    for cell in cells:
        if cell["cell_type"] == "code":
            h.update(_source(cell).encode("utf-8"))
            h.update(b"\0")
    return h.hexdigest()


def _has_image(cell: dict) -> bool:
    return any("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, monkeypatch, tmp_path):
    """Executes the code cells; a cell that draws a figure must have one among its committed
    outputs, and a cell that draws none must have none (outputs of other code)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLCORE_PROGRESS", "off")
    cells = json.loads(path.read_text())["cells"]
    code = [(c, i) for i, c in enumerate(cells) if c["cell_type"] == "code"]
    assert code, f"{path.name} has no code"
    namespace = {"__name__": "__main__"}
    plt.close("all")
    try:
        for cell, i in code:
            exec(compile(_source(cell), f"{path.name}[cell {i}]", "exec"), namespace)  # noqa: S102
            drew = bool(plt.get_fignums())
            plt.close("all")  # as Jupyter's inline backend does after each cell
            assert drew == _has_image(cell), (
                f"{path.name} cell {i} {'draws' if drew else 'draws no'} figure but its committed "
                f"outputs {'have none' if drew else 'have one'}: {RERUN}")
    finally:
        plt.close("all")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_committed_with_outputs(path):
    """Executed top to bottom in one kernel, from the code it holds now, without errors, with a
    figure, a first cell saying what it shows, and outputs of a modest size."""
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    counts = [c.get("execution_count") for c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{path.name} was not executed top to bottom in one kernel (execution counts {counts}): "
        + RERUN)
    recorded = nb.get("metadata", {}).get("dlcore", {}).get("code_sha256")
    assert recorded == _code_digest(cells), (
        f"{path.name}'s code changed after its outputs were made: {RERUN}")
    for i, cell in enumerate(cells):
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", (
                f"{path.name} cell {i} was committed with an error: {out.get('ename')}")
            text = "".join(out.get("text", ""))
            assert "Traceback" not in text and "\r" not in text, (
                f"{path.name} cell {i}: a traceback or a progress bar in its output; run with "
                "progress=False")
    assert any(_has_image(c) for c in code), f"{path.name} shows no figure"
    assert cells[0]["cell_type"] == "markdown" and _source(cells[0]).startswith("# "), (
        f"{path.name} must open with a markdown cell: a title and what it shows")
    assert "dlcore run" in _source(cells[0]), (
        f"{path.name}'s first cell must name the README command of the full version")
    assert path.stat().st_size < 500_000, f"{path.name} is {path.stat().st_size} bytes: smaller figures"


def test_a_notebook_per_family():
    names = {p.stem for p in NOTEBOOKS}
    assert set(FAMILIES) <= names, f"missing: {sorted(set(FAMILIES) - names)}"
