"""The docs build's own processing (`nbdev_proc_nbs`, what Quarto renders from) runs every notebook's import and
show_doc cells in one process per notebook — the check that the GitHub docs workflow will not break, runnable here
where Quarto cannot be installed. It also proves that cells can be run again: the docs processing imports each method
module after its notebook has defined the same class."""
import shutil, subprocess, sys, os
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip('nbdev', reason="docs processing needs nbdev: pip install -e '.[dev]'")

def test_docs_processing_passes_for_every_notebook(tmp_path):
    for d in ('nbs', 'moco'): shutil.copytree(ROOT / d, tmp_path / d, ignore=shutil.ignore_patterns('_proc', '__pycache__', '.ipynb_checkpoints'))
    shutil.copy(ROOT / 'settings.ini', tmp_path / 'settings.ini')
    env = dict(os.environ, PYTHONPATH=str(tmp_path), HF_HUB_OFFLINE='1', MOCO_HOME=str(tmp_path / 'moco-home'))
    # nbdev_proc_nbs = install Quarto if missing (it cannot be here), refresh the sidebar, then `proc_nbs`: run that last
    # step, with one worker process per core as nbdev_proc_nbs has (2-core Intel Xeon: 33 s with two, 61 s in one process)
    n = min(4, os.cpu_count() or 1)
    r = subprocess.run([sys.executable, '-c', f"from nbdev.serve import proc_nbs; proc_nbs('nbs', n_workers={n}, force=True)"],
                       cwd=tmp_path, capture_output=True, text=True, env=env, timeout=1200)
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    nbs = {p.relative_to(tmp_path / 'nbs').with_suffix('') for p in (tmp_path / 'nbs').rglob('*.ipynb') if '_proc' not in p.parts}
    done = {p.relative_to(tmp_path / '_proc').with_suffix('') for p in (tmp_path / '_proc').rglob('*.ipynb')}
    assert nbs <= done, f"not processed: {sorted(map(str, nbs - done))}"

def test_the_sidebar_lists_every_notebook():
    "The docs sidebar (nbs/sidebar.yml, by layer) lists every notebook, by name or glob, and nothing that does not exist."
    import fnmatch, yaml
    side = yaml.safe_load((ROOT / 'nbs' / 'sidebar.yml').read_text())['website']['sidebar']['contents']
    pats = []
    def walk(items):
        for it in items:
            if isinstance(it, str): pats.append(it)
            else: walk(it['contents'] if isinstance(it['contents'], list) else [it['contents']])
    walk(side)
    nbs = sorted(str(p.relative_to(ROOT / 'nbs')) for p in (ROOT / 'nbs').rglob('*.ipynb') if not any(s.startswith(('_', '.')) for s in p.relative_to(ROOT / 'nbs').parts))
    assert [n for n in nbs if not any(fnmatch.fnmatch(n, p) for p in pats)] == []
    assert [p for p in pats if not any(fnmatch.fnmatch(n, p) for n in nbs)] == []
    assert 'custom_sidebar = True' in (ROOT / 'settings.ini').read_text()
