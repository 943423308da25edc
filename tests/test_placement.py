"""Placement beyond the notebook: parameter counts of well-known models, plans on simulated 1/2/4/8 × 80 GB machines,
multi-node groups, randomized plan invariants, safetensors headers (sharded, adapters, junk), and hostile input."""
import json, logging, random
from pathlib import Path
import pytest
from moco.core import ModelError, ConfigError
from moco.config import EngineSettings
from moco.engines.hf import ModelRef
from moco.serving.placement import (GB, Device, machine, visible_devices, count_parameters, kv_cache_bytes, estimate_model_bytes,
                            safetensors_parameters, plan_placement, plan_models, PlacementError)

def llama(h, L, nq, nkv, I, V, tied=False, mt='llama', **kw):
    return dict(model_type=mt, hidden_size=h, num_hidden_layers=L, num_attention_heads=nq, num_key_value_heads=nkv,
                intermediate_size=I, vocab_size=V, tie_word_embeddings=tied, **kw)

# published parameter counts (model cards / HF `num_parameters()`)
KNOWN = {
    'llama-2-7b':   (llama(4096, 32, 32, 32, 11008, 32000), 6_738_415_616),
    'llama-2-13b':  (llama(5120, 40, 40, 40, 13824, 32000), 13_015_864_320),
    'llama-3-8b':   (llama(4096, 32, 32, 8, 14336, 128256), 8_030_261_248),
    'llama-3-70b':  (llama(8192, 80, 64, 8, 28672, 128256), 70_553_706_496),
    'mistral-7b':   (llama(4096, 32, 32, 8, 14336, 32000, mt='mistral'), 7_241_732_096),
    'qwen2-7b':     (llama(3584, 28, 28, 4, 18944, 152064, mt='qwen2'), 7_615_616_512),
    'qwen2.5-0.5b': (llama(896, 24, 14, 2, 4864, 151936, tied=True, mt='qwen2'), 494_032_768),
    'qwen3-8b':     (llama(4096, 36, 32, 8, 12288, 151936, mt='qwen3', head_dim=128), 8_190_735_360),
    'gemma-7b':     ({**llama(3072, 28, 16, 16, 24576, 256000, mt='gemma', head_dim=256), 'tie_word_embeddings': None}, 8_537_680_896),
    'phi-3-mini':   (llama(3072, 32, 32, 32, 8192, 32064, mt='phi3'), 3_821_079_552),
    'mixtral-8x7b': (llama(4096, 32, 32, 8, 14336, 32000, mt='mixtral', num_local_experts=8), 46_702_792_704),
    'pythia-6.9b':  (dict(model_type='gpt_neox', hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                          intermediate_size=16384, vocab_size=50432, tie_word_embeddings=False), 6_857_302_016),
}
L8B, L70B = KNOWN['llama-3-8b'][0], KNOWN['llama-3-70b'][0]
L405B = llama(16384, 126, 128, 8, 53248, 128256)

@pytest.mark.parametrize('name', KNOWN)
def test_parameter_counts_match_published(name):
    cfg, n = KNOWN[name]
    cfg = {k: v for k, v in cfg.items() if v is not None}   # gemma: no tie field -> tied by default
    assert abs(count_parameters(cfg) - n) / n < 0.01

def test_nested_text_config_and_405b():
    assert count_parameters({'model_type': 'gemma3', 'text_config': L8B}) == 8_030_261_248
    assert abs(count_parameters(L405B) - 405.85e9) / 405.85e9 < 0.01

def test_kv_cache_formula():
    # 2 x layers x kv_heads x head_dim x tokens x bytes
    assert kv_cache_bytes(L70B, 4096, 'bfloat16') == 2 * 80 * 8 * 128 * 4096 * 2
    assert kv_cache_bytes(L8B, 1000, 'float32') == 2 * kv_cache_bytes(L8B, 1000, 'bfloat16')

def test_estimate_bf16_vs_fp32():
    b16, b32 = estimate_model_bytes(L8B, 'bfloat16', 0), estimate_model_bytes(L8B, 'float32', 0)
    assert b16 == 2 * 8_030_261_248 and b32 == 2 * b16
    assert estimate_model_bytes(L8B, 'bfloat16', 4096, batch=8) == b16 + kv_cache_bytes(L8B, 8 * 4096, 'bfloat16')

def sizes(**models): return {n: estimate_model_bytes(c, 'bfloat16') for n, c in models.items()}

def test_one_gpu():
    p = plan_placement(sizes(a=L8B), machine(1))
    assert (p.device_of('a'), p.tensor_parallel('a'), p.memory_fraction('a')) == ('cuda:0', 1, 0.9)
    with pytest.raises(PlacementError) as e: plan_placement(sizes(big=L70B), machine(1), allow_cpu=False)
    msg = str(e.value)
    for part in ("'big'", '142.4 GB', 'cuda:0', 'allow_cpu', 'add GPUs', 'bfloat16'): assert part in msg
    assert plan_placement(sizes(big=L70B), machine(1)).device_of('big') == 'cpu'

def test_two_gpus_70b_needs_tensor_parallel_2():
    p = plan_placement(sizes(big=L70B), machine(2))
    assert p.devices_of('big') == ('cuda:0', 'cuda:1') and p.memory_fraction('big') == 0.9

def test_four_gpus_two_70b():
    p = plan_placement(sizes(a=L70B, b=L70B), machine(4), allow_cpu=False)
    assert {p.devices_of('a'), p.devices_of('b')} == {('cuda:0', 'cuda:1'), ('cuda:2', 'cuda:3')}

def test_eight_gpus():
    p = plan_placement({'fp32-70b': estimate_model_bytes(L70B, 'float32')}, machine(8))
    assert p.tensor_parallel('fp32-70b') == 4                      # 282 GB: 2 x 72 is not enough, 4 x 72 is
    p = plan_placement({f'm{i}': estimate_model_bytes(L8B, 'bfloat16') for i in range(8)}, machine(8))
    assert sorted(p.device_of(f'm{i}') for i in range(8)) == [f'cuda:{i}' for i in range(8)]   # spread: one per GPU
    p = plan_placement({f'big{i}': estimate_model_bytes(L70B, 'bfloat16') for i in range(4)}, machine(8), allow_cpu=False)
    assert sorted(p.devices_of(f'big{i}') for i in range(4)) == [(f'cuda:{i}', f'cuda:{i+1}') for i in range(0, 8, 2)]
    with pytest.raises(PlacementError, match=r"'405b' needs about 8\d\d\.\d GB.*tensor parallel over 8 GPUs 576\.0 GB"):
        plan_placement(sizes(**{'405b': L405B}), machine(8), allow_cpu=False)

def test_hf_engine_never_gets_tensor_parallel():
    with pytest.raises(PlacementError, match="engine 'vllm'"):
        plan_models({'big': L70B}, EngineSettings(kind='hf', dtype='bfloat16'), devices=machine(2), allow_cpu=False)
    p = plan_models({'big': L70B}, EngineSettings(kind='vllm', dtype='bfloat16'), devices=machine(2))
    s = p.settings_for('big', EngineSettings(kind='vllm'))
    assert (s.device, s.options['tensor_parallel_size'], s.options['gpu_memory_utilization']) == ('cuda:0', 2, 0.9)

def test_spread_then_pack():
    G = [Device(f'cuda:{i}', 'cuda', 10 * GB, 10 * GB) for i in range(2)]
    four = {f'm{i}': 5 * GB for i in range(4)}
    assert len({plan_placement(four, G, 1.0).device_of(n) for n in four}) == 2
    assert [plan_placement({'a': 2 * GB, 'b': 2 * GB}, G, 1.0, strategy=s).device_of('b') for s in ('spread', 'pack')] == ['cuda:1', 'cuda:0']
    tight = dict(a=5 * GB, b=4 * GB, c=4 * GB, d=3 * GB, e=3 * GB, f=1 * GB)   # spreading leaves one out; packing fits all
    p = plan_placement(tight, G, 1.0, allow_cpu=False, max_tp=1)
    assert all(p.device_of(n).startswith('cuda') for n in tight)

def test_fits_alone_but_not_with_others():
    with pytest.raises(PlacementError, match="does not fit next to the other models"):
        plan_placement({'a': 60 * GB, 'b': 60 * GB}, machine(1), allow_cpu=False)

def test_cpu_fallback_uses_cpu_factor_and_can_fail():
    m = machine(0, ram_gb=40)
    assert plan_placement({'a': 15 * GB}, m, cpu_factor=2).device_of('a') == 'cpu'
    with pytest.raises(PlacementError, match='free host RAM'): plan_placement({'a': 20 * GB}, m, cpu_factor=2)

def test_multi_node_groups_stay_in_node():
    devs = machine(2, node='n1') + machine(2, node='n2')
    p = plan_placement(sizes(a=L70B, b=L70B), devs, allow_cpu=False)
    assert {p.devices_of('a'), p.devices_of('b')} == {('n1/cuda:0', 'n1/cuda:1'), ('n2/cuda:0', 'n2/cuda:1')}
    with pytest.raises(PlacementError):   # 282 GB needs tp=4, and no node has 4 GPUs
        plan_placement({'x': estimate_model_bytes(L70B, 'float32')}, devs, allow_cpu=False)

def test_random_plans_respect_capacity():
    rng = random.Random(0)
    for trial in range(300):
        n_gpu = rng.choice([1, 2, 4, 8])
        devs = [Device(f'cuda:{i}', 'cuda', 80 * GB, rng.randint(20, 80) * GB) for i in range(n_gpu)] + [Device('cpu', 'cpu', 10**13, 10**13)]
        models = {f'm{i}': rng.randint(1, 200) * GB for i in range(rng.randint(1, 6))}
        p = plan_placement(models, devs, headroom=0.9)
        assert set(p.placements) == set(models)
        for d in devs[:-1]:
            on = [p.placements[n] for n in p.on(d.name)]
            assert sum(-(-x.need // x.tp) for x in on) <= 0.9 * d.free_bytes + 1
            assert sum(x.reserved for x in on) <= 0.9 * d.free_bytes + 1
            assert sum(p.memory_fraction(x.model) for x in on) <= 0.9 * d.free_bytes / d.total_bytes + 1e-9
        for x in p.placements.values():
            assert ((x.tp & (x.tp - 1)) == 0 and n_gpu % x.tp == 0) if not x.on_cpu else x.tp == 1
            if len(models) == 1 and x.need <= 0.9 * max(d.free_bytes for d in devs[:-1]):
                assert x.tp == 1 and not x.on_cpu, 'a model that fits one GPU got tensor parallelism or the CPU'

def test_bad_input():
    with pytest.raises(ConfigError): plan_placement({'a': GB}, machine(1), headroom=0)
    with pytest.raises(ConfigError): plan_placement({'a': -1}, machine(1))
    with pytest.raises(ConfigError): plan_placement({'a': GB}, machine(1), strategy='best')
    with pytest.raises(PlacementError, match='No devices'): plan_placement({'a': GB}, [])
    with pytest.raises(ConfigError): Device('tpu:0', 'tpu', 1, 1)
    with pytest.raises(ModelError, match='hidden_size'): count_parameters({'model_type': 'mystery'})
    with pytest.raises(ModelError): plan_models({'a': 'org-that-does-not-exist/model-x'})
    with pytest.raises(ModelError, match='does not exist'): estimate_model_bytes('/no/such/dir')

def test_visible_devices_on_this_machine(caplog):
    import torch
    if torch.cuda.is_available(): pytest.skip('CPU-only check')
    with caplog.at_level(logging.WARNING, logger='moco'): devs = visible_devices([0, 1])
    assert [d.kind for d in devs] == ['cpu'] and 'ignored' in caplog.text

@pytest.fixture(scope='module')
def tiny():
    from moco.tinymodels import tiny_llama
    return tiny_llama(seed=0)

def test_tiny_model_sized_from_header_and_planned_on_cpu(tiny):
    cfg = json.loads(Path(tiny, 'config.json').read_text())
    assert safetensors_parameters(tiny) == count_parameters(cfg)
    p = plan_models({'t': ModelRef('t', tiny)}, EngineSettings(device='cpu'))
    assert p.device_of('t') == 'cpu' and p.settings_for('t', EngineSettings()).device == 'cpu'
    assert plan_models({'t': ModelRef('t', tiny)}, EngineSettings(dtype='float32'), kv_budget_tokens=0).placements['t'].need == 4 * count_parameters(cfg)

def test_sharded_adapter_and_junk_weights(tmp_path, tiny):
    import torch
    from safetensors.torch import save_file
    d = tmp_path / 'sharded'; d.mkdir()
    (d / 'config.json').write_text(Path(tiny, 'config.json').read_text())
    save_file({'a': torch.zeros(3, 4)}, str(d / 'model-00001-of-00002.safetensors'))
    save_file({'b': torch.zeros(5), 'c': torch.zeros(2, 2, 2)}, str(d / 'model-00002-of-00002.safetensors'))
    (d / 'model.safetensors.index.json').write_text(json.dumps({'weight_map': {'a': 'model-00001-of-00002.safetensors',
        'b': 'model-00002-of-00002.safetensors', 'c': 'model-00002-of-00002.safetensors'}}))
    assert safetensors_parameters(d) == 12 + 5 + 8
    (d / 'model-00002-of-00002.safetensors').unlink()               # a shard missing: fall back to config.json
    assert safetensors_parameters(d) is None
    cfg = json.loads((d / 'config.json').read_text())
    assert estimate_model_bytes(d, 'float32', 0) == 4 * count_parameters(cfg)
    ad = tmp_path / 'adapter'; ad.mkdir()
    (ad / 'adapter_config.json').write_text(json.dumps({'base_model_name_or_path': tiny}))
    save_file({'lora_A': torch.zeros(8, 64), 'lora_B': torch.zeros(64, 8)}, str(ad / 'adapter_model.safetensors'))
    assert estimate_model_bytes(ModelRef('t+a', tiny, str(ad)), 'float32', 0) == 4 * (count_parameters(cfg) + 1024)
    junk = tmp_path / 'junk'; junk.mkdir()
    (junk / 'config.json').write_text(json.dumps(cfg)); (junk / 'model.safetensors').write_bytes(b'\x05\0\0\0\0\0\0\0nope!')
    assert safetensors_parameters(junk) is None and estimate_model_bytes(junk, 'float32', 0) == 4 * count_parameters(cfg)
