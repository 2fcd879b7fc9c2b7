"""Re-run chapter 7's benchmark-table cells (they only read benchmarks/results/) and store their new
outputs, so the rendered book shows the current results files without re-running the whole chapter.

    python scripts/refresh_ch07_tables.py      # from the repository root, after a benchmark wrote new results
"""
from __future__ import annotations

import nbformat
from nbclient import NotebookClient

PATH = "book/07_scaling_up.ipynb"
# the cells to refresh, found by their first lines of code (not by position)
MARKERS = ("bench = read_benchmarks(",)
# what those cells use (the chapter imports the same names from the kit)
SETUP = """from pathlib import Path
from IPython.display import Markdown, display
import simclr_lite
from simclr_book.budget import markdown_table
from simclr_book.scaling_book import benchmark_rows, distributed_tables, gpu_benchmark_files, read_benchmarks, say
ROOT = Path(simclr_lite.__file__).resolve().parents[1]
"""


def main() -> None:
    nb = nbformat.read(PATH, as_version=4)
    idx = [next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and m in c.source) for m in MARKERS]
    mini = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SETUP)]
                                    + [nbformat.v4.new_code_cell(nb.cells[i].source) for i in idx])
    mini.metadata = nb.metadata
    NotebookClient(mini, timeout=120, kernel_name="python3", resources={"metadata": {"path": "."}}).execute()
    for j, i in enumerate(idx, start=1):
        nb.cells[i].outputs = mini.cells[j].outputs
        for o in nb.cells[i].outputs:
            print("".join(o.get("text", "")) or o.get("data", {}).get("text/markdown", ""))
    nbformat.write(nb, PATH)
    print(f"refreshed cells {idx} of {PATH}")


if __name__ == "__main__":
    main()
