"""A killed run restarted with the same config regenerates nothing it finished, and ends exactly where an
uninterrupted run ends (sampling included: every request's seed is derived, never drawn)."""
import json, os, signal, sqlite3, subprocess, sys, time
from pathlib import Path
import pytest

DATA = os.environ.get('MOCO_DATA_DIR')
pytestmark = pytest.mark.skipif(not (DATA and Path(DATA, 'agieval_tiny.json').exists()), reason='MOCO_DATA_DIR with agieval_tiny.json is not available')

def _cfg(models, cache):
    return {"method": "single_model", "task": "agieval_tiny", "model_names": models, "cache_dir": str(cache), "seed": 7, "limit": 12,
            "hyperparameters": {"max_response_length": 12, "temperature": 0.8, "top_p": 0.95, "batch_size": 2}}

def _entries(db):
    try:
        with sqlite3.connect(db, timeout=1) as c: return c.execute('SELECT count(*) FROM completions').fetchone()[0]
    except sqlite3.Error: return 0

def test_kill_and_resume(tmp_path):
    from moco.tinymodels import tiny_llama
    models = [tiny_llama(str(tmp_path / f'm{i}'), seed=i) for i in range(2)]
    env = {**os.environ, 'HF_HUB_OFFLINE': '1'}
    cfg = tmp_path / 'c.json'; cfg.write_text(json.dumps(_cfg(models, tmp_path / 'cache')))
    p = subprocess.Popen(['moco', 'run', str(cfg), '-o', str(tmp_path / 'r1'), '--no-progress'], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    db = tmp_path / 'cache' / 'generations.sqlite'
    deadline = time.time() + 300
    while _entries(db) < 8 and time.time() < deadline and p.poll() is None: time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL); p.wait()
    finished = _entries(db)
    assert 8 <= finished < 24, f'kill landed at {finished} cached completions (expected mid-run)'
    assert not (tmp_path / 'r1' / 'results.json').exists()
    r = subprocess.run(['moco', 'run', str(cfg), '-o', str(tmp_path / 'r1'), '--no-progress'], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / 'r1' / 'results.json').read_text())
    assert res['cost']['cache_hits'] >= finished and res['cost']['generated_requests'] == 24 - finished
    # an uninterrupted run with a fresh cache produces the very same outputs
    cfg2 = tmp_path / 'c2.json'; cfg2.write_text(json.dumps(_cfg(models, tmp_path / 'cache2')))
    assert subprocess.run(['moco', 'run', str(cfg2), '-o', str(tmp_path / 'r2'), '--no-progress'], env=env, capture_output=True).returncode == 0
    out = lambda d: [json.loads(l)['output'] for l in (tmp_path / d / 'samples.jsonl').read_text().splitlines()]
    assert out('r1') == out('r2')
    res2 = json.loads((tmp_path / 'r2' / 'results.json').read_text())
    assert res['single_model_test_scores'] == res2['single_model_test_scores']
