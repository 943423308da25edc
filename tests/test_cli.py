"""End-to-end tests of the `moco` command: validation errors, a real run, its records, determinism."""
import json, os, re, subprocess, sys
from pathlib import Path
import pytest

DATA = os.environ.get('MOCO_DATA_DIR')
needs_data = pytest.mark.skipif(not (DATA and Path(DATA, 'agieval_tiny.json').exists()),
                                reason='MOCO_DATA_DIR with agieval_tiny.json is not available (set it to the MoCo data folder)')

def moco(*args, env=None, timeout=900):
    "Run the installed `moco` command; return (code, stdout, stderr)."
    e = {**os.environ, 'HF_HUB_OFFLINE': '1', **(env or {})}
    r = subprocess.run([sys.executable, '-m', 'moco.cli', *args] if False else ['moco', *args], capture_output=True, text=True, env=e, timeout=timeout)
    return r.returncode, r.stdout, r.stderr

@pytest.fixture(scope='session')
def tiny_models(tmp_path_factory):
    "Three tiny random Llama models with chat templates, built once per session."
    from moco.tinymodels import tiny_llama
    root = tmp_path_factory.mktemp('tiny')
    return [tiny_llama(str(root / f'm{i}'), seed=i) for i in range(3)]

MOCO_EXAMPLE = {"method": "text_majority_vote", "task": "agieval_tiny", "task_type": "multiple_choice", "gpu_ids": [0, 1, 2],
                "model_names": ["Qwen/Qwen2.5-7B-Instruct", "meta-llama/Llama-3.1-8B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3"],
                "hyperparameters": {"max_response_length": 512, "temperature": 0.7, "top_p": 0.9, "batch_size": 8, "tie": "random"}}

def _with(**kw):
    c = json.loads(json.dumps(MOCO_EXAMPLE)); c.update(kw); return c

def _hp(**kw):
    c = json.loads(json.dumps(MOCO_EXAMPLE)); c['hyperparameters'].update(kw); return c

BROKEN = {
    'unknown method':        (_with(method='text_majority_vot'), "did you mean 'text_majority_vote'"),
    'unknown task':          (_with(task='agieval_tinyy'), "agieval_tiny"),
    'missing model_names':   ({k: v for k, v in MOCO_EXAMPLE.items() if k != 'model_names'}, "model_names"),
    'empty model_names':     (_with(model_names=[]), "model_names"),
    'temperature below 0':   (_hp(temperature=-0.5), "temperature"),
    'temperature not number': (_hp(temperature='hot'), "temperature"),
    'unknown hyperparameter': (_hp(tei='random'), "did you mean 'tie'"),
    'bad tie value':         (_hp(tie='coin'), "tie"),
    'unknown top-level key': (_with(modle='x'), "modle"),
    'wrong task type':       (_with(task_type='multiple_choise'), "did you mean 'multiple_choice'"),
    'too few models':        (_with(model_names=["Qwen/Qwen2.5-7B-Instruct"]), "at least 2 models"),
    'missing local model':   (_with(model_names=["/no/such/model", "/no/such/other"]), "does not exist"),
}

@needs_data
@pytest.mark.parametrize('case', list(BROKEN))
def test_validate_broken_config(case, tmp_path):
    cfg, expect = BROKEN[case]
    p = tmp_path / 'c.json'; p.write_text(json.dumps(cfg))
    code, out, err = moco('validate', str(p))
    assert code == 2, (case, out, err)
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith('error: '), err      # one line, no traceback
    assert expect in lines[0], lines[0]

def test_validate_bad_json_and_missing_file(tmp_path):
    p = tmp_path / 'c.json'; p.write_text('{"method": "single_model",, }')
    code, _, err = moco('validate', str(p)); assert code == 2 and 'not valid JSON' in err and 'Traceback' not in err
    code, _, err = moco('validate', str(tmp_path / 'nope.yaml')); assert code == 2 and 'does not exist' in err

@needs_data
def test_validate_moco_example_ok(tmp_path):
    p = tmp_path / 'c.json'; p.write_text(json.dumps(MOCO_EXAMPLE))
    code, out, err = moco('validate', str(p))
    assert code == 0, err
    assert out.strip().splitlines()[-1].startswith('OK')

def test_help_everywhere():
    for args in ([], ['run'], ['validate'], ['score'], ['cache'], ['zoo', 'build'], ['data', 'fetch']):
        code, out, err = moco(*args, '--help')
        assert code == 0 and 'usage: moco' in out, (args, err)

def test_methods_listed():
    code, out, _ = moco('methods')
    assert code == 0 and 'text_majority_vote' in out and 'single_model' in out

def _run_config(models, tmp_path, **hp):
    return {"method": "text_majority_vote", "task": "agieval_tiny", "task_type": "multiple_choice", "gpu_ids": [0],
            "model_names": models, "cache_dir": str(tmp_path / 'cache'),
            "hyperparameters": {"max_response_length": 8, "temperature": 0, "batch_size": 8, "tie": "dev-based", **hp}}

@needs_data
def test_run_majority_vote_records(tiny_models, tmp_path):
    p = tmp_path / 'c.json'; p.write_text(json.dumps(_run_config(tiny_models, tmp_path)))
    code, out, err = moco('run', str(p), '-o', str(tmp_path / 'run'), '--no-progress')
    assert code == 0, err
    run = tmp_path / 'run'
    res = json.loads((run / 'results.json').read_text())
    for k in ('task', 'task_type', 'model_names', 'hyperparameters', 'avg_test_score', 'logs', 'seed', 'versions', 'hardware', 'cost', 'config'):
        assert k in res, k
    assert res['task'] == 'agieval_tiny' and res['n_test'] == 40 and len(res['logs']) == 40
    rows = [json.loads(l) for l in (run / 'samples.jsonl').read_text().splitlines()]
    assert len(rows) == 40 and {'prompt', 'output', 'extracted', 'score', 'trace'} <= set(rows[0])
    assert len(rows[0]['trace']['votes']) == 3
    log = (run / 'run.log').read_text()
    for m in tiny_models:   # each model loaded exactly once, and the log says so
        assert len(re.findall(rf"loaded model {re.escape(m)} ", log)) == 1, log
    assert res['cost']['model_loads'] == {m: 1 for m in tiny_models}

@needs_data
def test_rerun_same_seed_identical(tiny_models, tmp_path):
    "Same seed and temperature 0: identical outputs, also with the cache off (determinism of generation itself)."
    outs = []
    for i in range(2):
        cfg = _run_config(tiny_models, tmp_path, max_response_length=6); cfg['cache_dir'] = 'none'; cfg['limit'] = 6
        p = tmp_path / f'c{i}.json'; p.write_text(json.dumps(cfg))
        code, _, err = moco('run', str(p), '-o', str(tmp_path / f'r{i}'), '--no-progress'); assert code == 0, err
        outs.append([json.loads(l)['output'] for l in (tmp_path / f'r{i}' / 'samples.jsonl').read_text().splitlines()])
    assert outs[0] == outs[1]

@needs_data
def test_score_rescores_samples(tiny_models, tmp_path):
    cfg = _run_config(tiny_models, tmp_path); cfg['limit'] = 4
    p = tmp_path / 'c.json'; p.write_text(json.dumps(cfg))
    assert moco('run', str(p), '-o', str(tmp_path / 'r'), '--no-progress')[0] == 0
    code, out, err = moco('score', str(tmp_path / 'r' / 'samples.jsonl'))
    assert code == 0 and '0 changed' in out, (out, err)

def test_readme_commands_in_ci():
    "CI must run the README's test command verbatim."
    root = Path(__file__).resolve().parents[1]
    readme = (root / 'README.md').read_text()
    m = re.search(r'<!-- test-command -->\s*```(?:bash|sh)?\n(.+?)\n```', readme, re.S)
    assert m, 'README.md must mark its test command with <!-- test-command -->'
    assert m.group(1).strip() in (root / '.ci' / 'run').read_text()
