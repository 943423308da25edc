"""Run every notebook's cells (the literate tests) through pytest, one test per notebook.

Cells flagged `#| slow` or `#| cuda` are skipped unless MOCO_TEST_FLAGS names them (e.g. MOCO_TEST_FLAGS="slow").
Each notebook runs in a fresh subprocess, so one notebook's globals, models or threads never leak into another.
"""
import os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT / 'nbs').rglob('*.ipynb')
             if not any(part.startswith(('_', '.')) for part in p.relative_to(ROOT / 'nbs').parts))

RUNNER = """
import sys
from nbdev.test import test_nb
from pathlib import Path
ok, secs = test_nb(Path(sys.argv[1]), skip_flags=sys.argv[2].split(), force_flags=sys.argv[3].split())
print(f'{secs:.1f}s'); sys.exit(0 if ok else 1)
"""

@pytest.mark.parametrize('nb', NBS, ids=[str(p.relative_to(ROOT / 'nbs')) for p in NBS])
def test_notebook(nb):
    force = os.environ.get('MOCO_TEST_FLAGS', '').split()
    skip = [f for f in ('slow', 'cuda') if f not in force]
    r = subprocess.run([sys.executable, '-c', RUNNER, str(nb), ' '.join(skip), ' '.join(force)],
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, f"{nb.name} failed:\n{r.stderr[-6000:]}"
