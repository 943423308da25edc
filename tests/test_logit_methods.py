"""The logit-level methods as a user meets them on the command line: MoCo's configs for them validate unchanged, and what
cannot work (models with different tokenizers, MoCo's unimplemented `optimized` fusion, k < 1) is one line of error, exit
code 2, before any model is loaded or any run folder is made. The methods' defining properties are tested in their
notebooks (nbs/methods/40_*, 41_*)."""
import json, os, subprocess, sys
import pytest

ZOO = ['zoo/arith', 'zoo/base', 'zoo/other']

@pytest.fixture(scope='module', autouse=True)
def zoo_members():
    "The zoo members these configs name, built once (the rest of the suite shares them through MOCO_HOME)."
    from moco.zoo.builder import ensure
    ensure(progress=False, members=ZOO)

def moco(*args):
    "Run the `moco` command of this checkout; return (code, stdout, stderr)."
    r = subprocess.run([sys.executable, '-c', 'import sys; from moco.cli import main; sys.exit(main(sys.argv[1:]))', *args],
                       capture_output=True, text=True, env={**os.environ, 'HF_HUB_OFFLINE': '1'}, timeout=300)
    return r.returncode, r.stdout, r.stderr

def moco_config(method, **hp):
    "A config as MoCo writes it: gpu_ids, its generic hyperparameters, the method's own."
    return {'method': method, 'task': 'zoo_arith', 'task_type': 'exact_match', 'gpu_ids': [0, 1], 'model_names': ['zoo/arith', 'zoo/base'],
            'hyperparameters': {'max_response_length': 512, 'temperature': 0.7, 'top_p': 0.9, 'batch_size': 8, **hp}}

@pytest.mark.parametrize('method,hp', [('logit_logit_fusion', {'mode': 'average'}), ('logit_logit_contrastive', {'k': 1, 'lambda_': 0.2})])
def test_moco_configs_validate_unchanged(method, hp, tmp_path):
    p = tmp_path / 'c.json'; p.write_text(json.dumps(moco_config(method, **hp)))
    code, out, err = moco('validate', str(p))
    assert code == 0, err
    assert f'OK: {method} on zoo_arith' in out

REFUSED = {
    'fusion, different tokenizers':      (moco_config('logit_logit_fusion') | {'model_names': ['zoo/arith', 'zoo/other']}, "different vocabularies"),
    'contrastive, different tokenizers': (moco_config('logit_logit_contrastive') | {'model_names': ['zoo/other', 'zoo/arith']}, "different vocabularies"),
    "fusion, MoCo's unimplemented mode": (moco_config('logit_logit_fusion', mode='optimized'), "mode"),
    'contrastive, k = 0':                (moco_config('logit_logit_contrastive', k=0), "k must be at least 1"),
}

@pytest.mark.parametrize('case', list(REFUSED))
def test_refused_before_compute(case, tmp_path):
    cfg, expect = REFUSED[case]
    p = tmp_path / 'c.json'; p.write_text(json.dumps(cfg))
    for args in (('validate', str(p)), ('run', str(p), '-o', str(tmp_path / 'run'))):
        code, out, err = moco(*args)
        lines = [l for l in err.strip().splitlines() if l.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith('error: '), (args, code, err)   # one line, no traceback
        assert expect in lines[0], lines[0]
        if 'tokenizers' in case: assert all(m in lines[0] for m in cfg['model_names']), lines[0]   # names both models
    assert not (tmp_path / 'run').exists()                                                            # nothing was started
