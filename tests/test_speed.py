"""What the speed work must never change, and what a cached run must never pay for: prefix key/value reuse gives the
same completions as computing every prompt in full (greedy and sampled, through a whole multi-round run), and a run
served entirely from the generation cache imports neither torch nor transformers."""
import json, os, subprocess, sys
from pathlib import Path
import pytest

DATA = os.environ.get('MOCO_DATA_DIR')
pytestmark = pytest.mark.skipif(not (DATA and Path(DATA, 'agieval_tiny.json').exists()), reason='MOCO_DATA_DIR with agieval_tiny.json is not available')

def _cfg(models, cache, temperature, prefix_cache_gb=None):
    engine = {'kind': 'hf', 'device': 'cpu'}
    if prefix_cache_gb is not None: engine['options'] = {'prefix_cache_gb': prefix_cache_gb}
    return {'method': 'text_multiagent_refine', 'task': 'agieval_tiny', 'task_type': 'multiple_choice', 'model_names': models,
            'cache_dir': str(cache), 'seed': 3, 'limit': 6, 'engine': engine,
            'hyperparameters': {'max_response_length': 10, 'temperature': temperature, 'top_p': 0.9, 'batch_size': 4, 'round': 2}}

@pytest.fixture(scope='module')
def models(tmp_path_factory):
    from moco.tinymodels import tiny_llama
    root = tmp_path_factory.mktemp('speed-models')
    return [tiny_llama(str(root / f'm{i}'), seed=i) for i in range(2)]

@pytest.mark.parametrize('temperature', [0, 0.8])
def test_prefix_reuse_keeps_every_output(models, tmp_path, temperature):
    "The refine job (dev pass, two rounds, summary) with the prefix store on and off: the same outputs and traces, fewer tokens computed."
    from moco.run import run
    recs = {gb: run(_cfg(models, tmp_path / f'cache{gb}', temperature, gb), output_dir=tmp_path / f'run{gb}', progress=False)
            for gb in (0, 0.5)}
    samples = {gb: [json.loads(l) for l in (r.path / 'samples.jsonl').read_text().splitlines()] for gb, r in recs.items()}
    assert [(s['output'], s['trace']) for s in samples[0]] == [(s['output'], s['trace']) for s in samples[0.5]]
    off, on = recs[0].results['cost'], recs[0.5].results['cost']
    assert off['prompt_tokens'] == on['prompt_tokens'] and off['prefill_tokens_computed'] == off['prompt_tokens']
    assert on['prefill_tokens_computed'] < 0.75 * on['prompt_tokens']   # rounds 2 and the summary reuse round 1's task prompt

@pytest.mark.parametrize('temperature', [0, 0.8])
def test_own_decode_loop_keeps_every_output(models, tmp_path, temperature, monkeypatch):
    "The refine job decoded by the engine's own loop and by transformers' `generate`: the same outputs and traces."
    from moco.run import run
    from moco.engines.hf import HFEngine
    calls = []
    decode = HFEngine._decode
    monkeypatch.setattr(HFEngine, '_decode', lambda self, *a, **k: calls.append(1) or decode(self, *a, **k))
    samples = {}
    for own in (True, False):
        monkeypatch.setattr(HFEngine, 'own_decode', own)
        r = run(_cfg(models, tmp_path / f'cache{own}', temperature), output_dir=tmp_path / f'run{own}', progress=False)
        samples[own] = [json.loads(l) for l in (r.path / 'samples.jsonl').read_text().splitlines()]
        if own: assert calls, "the job's batches were expected to go through the engine's own decoding loop"
        else: n_own = len(calls)
    assert len(calls) == n_own   # with own_decode off, every batch went through generate
    assert [(s['output'], s['trace']) for s in samples[True]] == [(s['output'], s['trace']) for s in samples[False]]

def test_cached_run_imports_neither_torch_nor_transformers(models, tmp_path):
    "A rerun served from the cache never loads a model, so it must not import torch or transformers either (nor the other methods' modules)."
    cfg = tmp_path / 'c.json'; cfg.write_text(json.dumps(_cfg(models, tmp_path / 'cache', 0.8)))
    env = {**os.environ, 'HF_HUB_OFFLINE': '1'}
    first = subprocess.run(['moco', 'run', str(cfg), '-o', str(tmp_path / 'r1'), '--no-progress'], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    probe = ("import sys, json; from moco.run import run; r = run(sys.argv[1], output_dir=sys.argv[2], progress=False); "
             "print(json.dumps({'torch': 'torch' in sys.modules, 'transformers': 'transformers' in sys.modules, "
             "'methods': sorted(m for m in sys.modules if m.startswith('moco.methods.')), 'merge': 'moco.merge' in sys.modules, "
             "'generated': r.results['cost']['generated_requests'], 'versions': r.results['versions']}))")
    again = subprocess.run([sys.executable, '-c', probe, str(cfg), str(tmp_path / 'r2')], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    got = json.loads(again.stdout.strip().splitlines()[-1])
    assert got['generated'] == 0
    assert not got['torch'] and not got['transformers'], got
    assert got['methods'] == ['moco.methods.collab', 'moco.methods.text_multiagent_refine'] and not got['merge'], got   # only the method's own module (and what it imports)
    import torch, transformers   # the record still names the versions, read from package metadata
    assert got['versions']['torch'] == torch.__version__ and got['versions']['transformers'] == transformers.__version__
    out = lambda d: [json.loads(l)['output'] for l in (tmp_path / d / 'samples.jsonl').read_text().splitlines()]
    assert out('r1') == out('r2')

HEAVY = ('transformers', 'torch._dynamo', 'torch.distributed.tensor', 'scipy.optimize', 'transformers.modeling_utils', 'transformers.models.llama.modeling_llama')

@pytest.mark.parametrize('temperature', [0, 0.8])
def test_light_load_keeps_every_output_and_skips_transformers(models, tmp_path, temperature):
    "On a fresh installation (empty `$MOCO_HOME`) the first run loads its models through transformers and records their light-load verification; a second process loads them light, never imports transformers (nor torch._dynamo, torch.distributed.tensor, scipy.optimize), and gives the same outputs and traces."
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'MOCO_HOME': str(tmp_path / 'home')}
    probe = ("import sys, json; from moco.run import run; r = run(json.loads(sys.argv[1]), output_dir=sys.argv[2], progress=False); "
             f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))")
    got = {}
    for i in (1, 2):
        cfg = json.dumps(_cfg(models, tmp_path / f'cache{i}', temperature))   # a cold generation cache each time
        p = subprocess.run([sys.executable, '-c', probe, cfg, str(tmp_path / f'r{i}')], env=env, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        got[i] = json.loads(p.stdout.strip().splitlines()[-1])
    assert got[1]['transformers.modeling_utils'] and got[1]['transformers.models.llama.modeling_llama'], got[1]   # the first process loaded through transformers
    assert not any(got[2].values()), got[2]            # the second loaded light
    assert len(json.loads((tmp_path / 'home' / 'light-load.json').read_text())) == 1   # the two models share configuration and tokenizer files
    out = lambda d: [(s['output'], s['trace']) for s in map(json.loads, (tmp_path / d / 'samples.jsonl').read_text().splitlines())]
    assert out('r1') == out('r2')
