"""Benchmark grids from the command line: a grid killed with SIGKILL resumes without redoing finished cells or paying for a
generation twice; cells in parallel worker processes; the report over the grid."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest

GRID = """name: killed
tasks: [zoo_mix]
pools:
  trio: [zoo/arith, zoo/capitals, zoo/habitats]
methods:
  - text_majority_vote
  - method: api_cascade
    sweep: {percentage: [0.3, 0.7]}
  - text_multiagent_refine
defaults:
  limit: 16
  cache_dir: CACHE
  hyperparameters: {max_response_length: 40, temperature: 0, batch_size: 64}
"""

@pytest.fixture(scope='module', autouse=True)
def zoo_models():
    "Build the zoo members these grids use first (in this process), so that no timed or parallel step waits on a zoo build."
    from moco.providers import provided
    for m in ('zoo/arith', 'zoo/capitals', 'zoo/habitats'): provided('model', m)

def moco(*args, **kw):
    return subprocess.run(['moco', *args], capture_output=True, text=True, timeout=900, **kw)

def test_a_killed_grid_resumes_without_redoing_work(tmp_path):
    from moco.bench import duplicate_generations
    grid = tmp_path / 'grid.yaml'; grid.write_text(GRID.replace('CACHE', str(tmp_path / 'cache')))
    out = tmp_path / 'out'
    p = subprocess.Popen(['moco', 'bench', str(grid), '-o', str(out), '--no-progress'],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    while not list(out.glob('**/done.json')) and time.time() - t0 < 600 and p.poll() is None: time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL); p.wait()
    first = {f: f.stat().st_mtime for f in out.glob('**/done.json')}
    assert 1 <= len(first) < 4, f'kill landed after {len(first)} finished cells'
    status = moco('bench', str(out), '--status')
    assert status.returncode == 0 and f'{len(first)}/4 cells done' in status.stdout, status.stdout + status.stderr
    r = moco('bench', str(grid), '-o', str(out), '--no-progress')
    assert r.returncode == 0, r.stderr[-3000:]
    assert '4 done, 0 failed of 4' in r.stdout
    assert {f: f.stat().st_mtime for f in first} == first          # finished cells were not run again
    assert duplicate_generations(out) == {}                          # and no generation was paid twice
    rep = moco('report', str(out))
    assert rep.returncode == 0 and 'best single model' in rep.stdout and (out / 'report/report.html').exists(), rep.stderr[-2000:]

def test_cells_in_parallel_processes(tmp_path):
    from moco.bench import bench
    g = {'tasks': ['zoo_arith'], 'pools': {'duo': ['zoo/arith', 'zoo/capitals']},
         'methods': ['text_majority_vote', {'method': 'api_cascade', 'label': 'cascade'}],
         'defaults': {'limit': 8, 'cache_dir': str(tmp_path / 'cache'), 'hyperparameters': {'max_response_length': 40, 'temperature': 0}}}
    res = bench(g, tmp_path / 'par', workers=2, progress=False)
    assert set(res.states.values()) == {'done'}, res.errors
    seq = bench({**g, 'defaults': {**g['defaults'], 'cache_dir': str(tmp_path / 'cache2')}}, tmp_path / 'seq', progress=False)
    assert seq.scores() == res.scores()

def test_cells_as_ray_tasks(tmp_path):
    "The Ray executor runs the same cells to the same scores (a private local Ray instance)."
    ray = pytest.importorskip('ray', reason='Ray is not installed')
    import logging
    from moco.bench import bench
    os.environ.setdefault('RAY_AUTH_MODE', 'disabled')
    g = {'tasks': ['zoo_arith'], 'pools': {'duo': ['zoo/arith', 'zoo/capitals']}, 'methods': ['text_majority_vote', 'api_cascade'],
         'defaults': {'limit': 8, 'cache_dir': str(tmp_path / 'cache'), 'hyperparameters': {'max_response_length': 40, 'temperature': 0}}}
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, logging_level=logging.WARNING,
             runtime_env={'env_vars': {k: v for k, v in os.environ.items() if k in ('MOCO_HOME', 'MOCO_DATA_DIR', 'HF_HUB_OFFLINE')}})
    try: res = bench(g, tmp_path / 'ray', workers=2, executor='ray', progress=False)
    finally: ray.shutdown()
    assert set(res.states.values()) == {'done'}, res.errors
    seq = bench({**g, 'defaults': {**g['defaults'], 'cache_dir': str(tmp_path / 'cache2')}}, tmp_path / 'seq', progress=False)
    assert seq.scores() == res.scores()
