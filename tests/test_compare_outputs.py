"""scripts/compare_outputs.py: a re-executed chapter matches its stored numbers, wall times aside."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("compare_outputs", ROOT / "scripts" / "compare_outputs.py")
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)


def notebook(path: Path, knn: str, seconds: str, how: str = "LOADED from the run cache") -> Path:
    cells = [{"cell_type": "code", "source": "", "metadata": {}, "outputs": [
        {"output_type": "stream", "name": "stdout", "text": f"kNN top-1 {knn}% ({seconds} s for features)\n"
                                                            f"shared model: {how}\n"},
        {"output_type": "display_data", "metadata": {}, "data": {"text/markdown": f"| a | {knn} | {seconds} min |"}},
        {"output_type": "display_data", "metadata": {"scrapbook": {"name": "ch09_wall_min"}},
         "data": {"application/papermill.record/text/plain": seconds}}]}]
    path.write_text(json.dumps({"cells": cells}))
    return path


def test_wall_times_and_cache_state_may_differ_numbers_may_not(tmp_path, capsys):
    stored = notebook(tmp_path / "a.ipynb", "55.9", "12.1")
    same = notebook(tmp_path / "b.ipynb", "55.9", "9.4", how="TRAINED NOW, in 19.9 min")
    diffs, n, cache_lines = compare.differences(stored, same)
    assert diffs == [] and n == 4 and cache_lines == 2        # the cache line, the glued wall time
    assert compare.main([str(stored), str(same)]) == 0
    other = notebook(tmp_path / "c.ipynb", "55.8", "12.1")
    diffs, _, _ = compare.differences(stored, other)
    assert [d[0] for d in diffs] == [0, 0]                      # the printed kNN and the table row
    assert compare.main([str(stored), str(other)]) == 1
    assert "2 differ beyond wall times" in capsys.readouterr().out
