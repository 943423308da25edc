"""The house's layering (architecture.md): import-linter's `layers` contract in `.importlinter` (nothing imports upward, every
subpackage placed in a layer) and no import cycles between modules — imports inside functions included."""
import shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
grimp = pytest.importorskip('grimp', reason="the layer check needs import-linter: pip install -e '.[dev]'")

def lint(root:Path):
    "Run import-linter on the `moco` package found at `root`."
    return subprocess.run([sys.executable, '-c', 'import sys; from importlinter.cli import lint_imports_command; lint_imports_command()',
                           '--config', str(ROOT / '.importlinter'), '--no-cache'],
                          cwd=root, capture_output=True, text=True, env={'PYTHONPATH': str(root), 'PATH': '/usr/bin:/bin'})

def test_layers_contract_is_kept():
    r = lint(ROOT)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert '1 kept, 0 broken' in r.stdout

def test_every_subpackage_is_in_the_contract():
    layers = (ROOT / '.importlinter').read_text().split('layers =')[1].split('exhaustive')[0]
    named = {n.strip() for line in layers.splitlines() for n in line.replace('|', ':').split(':') if n.strip()}
    pkgs = {p.name for p in (ROOT / 'moco').iterdir() if (p / '__init__.py').exists()}
    mods = {p.stem for p in (ROOT / 'moco').glob('*.py') if p.stem not in ('__init__', '_modidx')}
    assert pkgs | mods == named, f"in the package but not the contract: {sorted((pkgs | mods) - named)}; stale: {sorted(named - (pkgs | mods))}"

def test_an_upward_import_inside_a_function_fails_naming_it(tmp_path):
    "The check is real: a copy of the package whose core imports the zoo inside a function breaks the contract."
    shutil.copytree(ROOT / 'moco', tmp_path / 'moco')
    core = tmp_path / 'moco' / 'core.py'
    core.write_text(core.read_text() + '\n\ndef _sneaky():\n    from moco.zoo import builder\n    return builder\n')
    r = lint(tmp_path)
    assert r.returncode != 0 and 'moco.core -> moco.zoo.builder' in r.stdout, r.stdout[-3000:]

def _cycles(graph)->list[list[str]]:
    "Strongly connected components with more than one module (Tarjan)."
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(sorted(comp))
    sys.setrecursionlimit(10000)
    for v in sorted(graph.modules):
        if v not in index: visit(v)
    return out

def test_no_import_cycles():
    sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph('moco', cache_dir=None)
    assert _cycles(graph) == []
    # and the detector finds one when there is one
    graph.add_import(importer='moco.core', imported='moco.config')
    assert _cycles(graph) == [['moco.config', 'moco.core']]
