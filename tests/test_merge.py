"""`moco.merge` cross-checked against mergekit itself: the `mergekit-yaml` CLI and moco merge the tiny zoo's models from
the same YAML, and every tensor must agree to float tolerance; DARE (moco's and mergekit's) keeps a `density` fraction of
every delta within a binomial margin."""
import shutil, subprocess
from pathlib import Path
import pytest

torch = pytest.importorskip('torch')
from safetensors.torch import load_file
from moco.merge import MergeSpec, merge, to_mergekit, read_mergekit, extrapolation

MERGEKIT = shutil.which('mergekit-yaml')
needs_mergekit = pytest.mark.skipif(MERGEKIT is None, reason="mergekit is not installed: pip install mergekit (it is in moco's dev extra)")
SPECIALISTS = ['arith', 'capitals', 'habitats']

@pytest.fixture(scope='module')
def zoo():
    "Local folders of the zoo models used here (built on first use)."
    from moco.zoo.builder import model_path
    return {n: model_path(f'zoo/{n}') for n in ['base', 'arith-early', 'arith-lora'] + SPECIALISTS}

def tensors(folder)->dict:
    return {k: v for f in sorted(Path(folder).glob('*.safetensors')) for k, v in load_file(str(f)).items()}

def run_mergekit(yaml_text:str, out:Path)->dict:
    "Run the mergekit-yaml CLI on `yaml_text`; return the merged tensors."
    cfg = out.with_suffix('.yml'); cfg.write_text(yaml_text)
    r = subprocess.run([MERGEKIT, str(cfg), str(out), '--no-write-model-card', '--quiet', '--random-seed', '0'],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return tensors(out)

def assert_same(ours:dict, theirs:dict, atol=1e-6):
    assert sorted(ours) == sorted(theirs)
    for k in ours:
        assert ours[k].dtype == theirs[k].dtype, k
        torch.testing.assert_close(ours[k], theirs[k], rtol=1e-5, atol=atol, msg=lambda m: f'{k}: {m}')

F32 = dict(dtype='float32')   # the zoo stores bfloat16 weights; both tools compute in float32 and write float32 here
SPECS = {
    'linear': lambda z: MergeSpec('linear', [z[s] for s in SPECIALISTS], weights=[0.5, 0.3, 0.2], **F32),
    'task_arithmetic': lambda z: MergeSpec('task_arithmetic', [z[s] for s in SPECIALISTS], weights=[0.7, 0.5, 0.4], base=z['base'], **F32),
    'ties': lambda z: MergeSpec('ties', [z[s] for s in SPECIALISTS], weights=[0.5, 0.3, 0.2], base=z['base'], density=[0.5, 0.3, 0.7], **F32),
    'extrapolation': lambda z: extrapolation(z['arith'], z['arith-early'], 0.4, **F32),
}

@needs_mergekit
@pytest.mark.parametrize('case', list(SPECS))
def test_same_tensors_as_mergekit(case, zoo, tmp_path):
    spec = SPECS[case](zoo)
    theirs = run_mergekit(to_mergekit(spec), tmp_path / 'mergekit')
    ours = tensors(merge(spec, tmp_path / 'moco'))
    assert_same(ours, theirs)
    base = tensors(zoo['base'])
    assert any(not torch.equal(ours[k], base[k].float()) for k in ours)     # the merge did something

@needs_mergekit
def test_mergekit_yaml_read_by_moco(zoo, tmp_path):
    """A config written by hand in mergekit's own style (base listed among the models, global defaults, no normalisation,
    a `lambda`) means the same to both."""
    yaml_text = f"""
merge_method: ties
base_model: {zoo['base']}
models:
  - model: {zoo['base']}
  - model: {zoo['arith']}
    parameters: {{weight: 0.6, density: 0.4}}
  - model: {zoo['capitals']}
  - model: {zoo['habitats']}
    parameters: {{density: 0.8}}
parameters:
  weight: 0.3
  density: 0.5
  normalize: false
  lambda: 0.6
dtype: float32
"""
    spec = read_mergekit(yaml_text)
    assert spec.models == [zoo[s] for s in SPECIALISTS] and spec.weight_list == [0.6, 0.3, 0.3] and spec.densities == [0.4, 0.5, 0.8]
    assert (spec.do_normalize, spec.scale) == (False, 0.6)
    assert_same(tensors(merge(spec, tmp_path / 'moco')), run_mergekit(yaml_text, tmp_path / 'mergekit'))

def kept_fractions(merged:dict, model:dict, base:dict)->list:
    "(kept entries, entries with a nonzero delta) per tensor where the model moved away from the base."
    out = []
    for k, b in base.items():
        d = model[k].float() - b.float()
        moved = d != 0
        if moved.sum() < 1000: continue                  # embeddings and norms were frozen in the zoo's fine-tunes
        out.append((int(((merged[k].float() - b.float()) != 0)[moved].sum()), int(moved.sum())))
    return out

def within_binomial(kept:list, density:float, sigmas:float=4.0)->bool:
    return all(abs(k / n - density) <= sigmas * (density * (1 - density) / n) ** 0.5 for k, n in kept)

@pytest.mark.parametrize('density', [0.2, 0.5, 0.9])
def test_dare_keeps_a_density_fraction(density, zoo, tmp_path):
    spec = MergeSpec('dare_linear', [zoo['arith']], weights=[1.0], base=zoo['base'], density=density, seed=7, **F32)
    merged, model, base = tensors(merge(spec, tmp_path / 'dare')), tensors(zoo['arith']), tensors(zoo['base'])
    kept = kept_fractions(merged, model, base)
    assert len(kept) >= 10 and within_binomial(kept, density), kept
    total = sum(k for k, _ in kept) / sum(n for _, n in kept)
    assert abs(total - density) < 0.01
    k = 'model.layers.0.mlp.up_proj.weight'                         # survivors are rescaled by 1/density (the paper)
    on = merged[k] != base[k]
    torch.testing.assert_close(merged[k][on] - base[k][on].float(), (model[k].float() - base[k].float())[on] / density, rtol=1e-4, atol=1e-6)
    again = tensors(merge(MergeSpec('dare_linear', [zoo['arith']], weights=[1.0], base=zoo['base'], density=density, seed=7, **F32), tmp_path / 'again'))
    assert all(torch.equal(again[k], merged[k]) for k in merged)   # seeded: the same merge twice

def test_dare_ties_honours_density(zoo, tmp_path):
    "The reference's DARE-TIES never passed `density` (mergekit's default 1.0 keeps everything); moco's does."
    full = tensors(merge(MergeSpec('dare_ties', [zoo[s] for s in SPECIALISTS], weights=[1/3] * 3, base=zoo['base'], density=1.0, **F32), tmp_path / 'd1'))
    half = tensors(merge(MergeSpec('dare_ties', [zoo[s] for s in SPECIALISTS], weights=[1/3] * 3, base=zoo['base'], density=0.5, **F32), tmp_path / 'd5'))
    base = tensors(zoo['base'])
    k = 'model.layers.1.self_attn.q_proj.weight'
    changed = lambda m: ((m[k] - base[k].float()) != 0).float().mean().item()
    assert changed(full) > 0.99
    # an entry survives unless every model that moved it was dropped or voted down: fewer survive at density 0.5
    assert changed(half) < changed(full) - 0.05

@needs_mergekit
def test_mergekit_dare_keeps_the_same_fraction(zoo, tmp_path):
    "mergekit's DARE and moco's agree on what `density` means (masks differ: both are random)."
    spec = MergeSpec('dare_linear', [zoo['arith']], weights=[1.0], base=zoo['base'], density=0.3)
    merged = run_mergekit(to_mergekit(spec), tmp_path / 'mergekit')
    assert within_binomial(kept_fractions(merged, tensors(zoo['arith']), tensors(zoo['base'])), 0.3)
