"""The package as users get it: a wheel built from this checkout installs into a fresh virtual environment and its
commands run from there (not from the checkout)."""
import shutil, subprocess, sys, zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def test_wheel_installs_and_runs(tmp_path):
    src = tmp_path / 'src'; src.mkdir()      # build from a copy: no build/ folder left in (or reused from) the checkout
    for f in ('setup.py', 'settings.ini', 'README.md', 'MANIFEST.in'): shutil.copy(ROOT / f, src / f)
    shutil.copytree(ROOT / 'moco', src / 'moco', ignore=shutil.ignore_patterns('__pycache__'))
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation', '-w', str(tmp_path / 'dist'), str(src)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    wheel = next((tmp_path / 'dist').glob('*.whl'))
    names = zipfile.ZipFile(wheel).namelist()
    mods = {str(p.relative_to(ROOT)) for p in (ROOT / 'moco').rglob('*.py')}
    assert mods <= set(names), sorted(mods - set(names))[:5]                  # every exported module ships
    assets = {str(p.relative_to(ROOT)) for p in (ROOT / 'moco' / 'assets').rglob('*') if p.is_file()}
    assert assets <= set(names), sorted(assets - set(names))[:5]              # and the data files it reads
    # a fresh venv that sees the already-installed dependencies (torch, transformers) but gets moco only from the wheel
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--system-site-packages', str(venv)], check=True, timeout=300)
    py = venv / 'bin' / 'python'
    r = subprocess.run([str(py), '-m', 'pip', 'install', '-q', '--no-deps', str(wheel)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = subprocess.run([str(py), '-c', 'import moco, sys; print(moco.__file__)'], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert str(venv) in out.stdout, out.stdout + out.stderr                    # the wheel's copy, not the checkout
    for args in (['--help'], ['quickstart', '--help'], ['bench', '--help'], ['methods']):
        r = subprocess.run([str(venv / 'bin' / 'moco'), *args], capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert r.returncode == 0 and r.stdout.strip(), (args, r.stderr[-2000:])
    assert 'text_majority_vote' in r.stdout
