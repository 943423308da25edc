"""The Ray executor on a private 2-CPU Ray instance (one per module): two tiny models served from actors give exactly the
local HFEngine's completions (greedy and seeded sampling), each actor loads its model once, close() kills it, load errors
come back as the same moco errors, and a pool serves through a RayEngine with its cache. Skipped without Ray installed."""
import os, logging, time
from dataclasses import replace
import pytest
ray = pytest.importorskip('ray', reason="Ray is not installed (pip install 'moco-collab[ray]')")
from moco.core import GenParams, Request, ModelError, EngineError
from moco.config import EngineSettings
from moco.engines.hf import HFEngine, ModelRef, resolve_model
from moco.serving.placement import plan_models
from moco.serving.ray_executor import make_ray_engine, RayEngine, cluster_devices

SETTINGS = EngineSettings(device='cpu', dtype='float32', executor='ray')
PROMPTS = ['What is 2+2?', 'Name a colour.', Request(messages=({'role': 'user', 'content': 'Hi'},), prefix='The answer'),
           'Answer: A) B) C) D) ' * 5]

@pytest.fixture(scope='module')
def cluster():
    os.environ.setdefault('RAY_AUTH_MODE', 'disabled')
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()

@pytest.fixture(scope='module')
def served(cluster):
    from moco.tinymodels import tiny_llama
    refs = {n: replace(resolve_model(tiny_llama(seed=s)), name=n) for n, s in (('tiny-a', 0), ('tiny-b', 1))}
    plan = plan_models(refs, SETTINGS)
    engines = {n: make_ray_engine(r, SETTINGS, batch_size=2, placement=plan) for n, r in refs.items()}
    yield refs, engines
    for e in engines.values(): e.close()

@pytest.mark.parametrize('params', [GenParams(max_new_tokens=10, temperature=0),
                                    GenParams(max_new_tokens=10, temperature=1.0, top_p=0.9, logprobs=True)], ids=['greedy', 'sampled'])
def test_ray_outputs_equal_local(served, params):
    refs, engines = served
    reqs = [Request(p, seed=i) if isinstance(p, str) else replace(p, seed=i) for i, p in enumerate(PROMPTS)]
    for n, ref in refs.items():
        local = HFEngine(ref, device='cpu', dtype='float32', batch_size=2)
        want, got = local.generate(reqs, params), engines[n].generate(reqs, params)
        assert [c.text for c in got] == [c.text for c in want]
        assert [(c.token_ids, c.finish_reason, c.prompt_tokens) for c in got] == [(c.token_ids, c.finish_reason, c.prompt_tokens) for c in want]
        if params.logprobs:
            for g, w in zip(got, want): assert g.logprobs == pytest.approx(w.logprobs, abs=1e-4)
        assert all(c.model == n for c in got) and engines[n].fingerprint() == local.fingerprint()
        local.close()
    assert engines['tiny-a'].generate(reqs, params) != engines['tiny-b'].generate(reqs, params)

def test_actor_reused_and_separate_per_model(served):
    _, engines = served
    a, b = engines['tiny-a'], engines['tiny-b']
    s0 = a.stats(); a.generate(['x'], GenParams(max_new_tokens=2)); a.generate(['y'], GenParams(max_new_tokens=2)); s1 = a.stats()
    assert (s0['pid'], s0['loaded_at']) == (s1['pid'], s1['loaded_at']) and s1['calls'] == s0['calls'] + 2
    assert a.stats()['pid'] != b.stats()['pid'] and a.stats()['pid'] != os.getpid()
    assert a.device == 'cpu' and a.num_gpus == 0 and a.capabilities == {'text', 'chat', 'logprobs'}
    assert a.memory_bytes() == HFEngine(a.ref, device='cpu', dtype='float32').memory_bytes() > 0
    assert a.generate([], GenParams()) == []

def test_pool_serves_through_ray_with_cache(served, tmp_path):
    from moco.serving.pool import ModelPool
    refs, engines = served
    pool = ModelPool([refs['tiny-a'].base], engine=SETTINGS, cache=tmp_path / 'cache.sqlite')
    pool.engines[pool.names[0]] = engines['tiny-a']                  # what pool.make_engine will do for executor 'ray'
    p = GenParams(max_new_tokens=6, temperature=0)
    first = pool.generate(pool.names[0], ['What is 2+2?', 'Name a colour.'], p)
    calls = engines['tiny-a'].stats()['calls']
    again = pool.generate(pool.names[0], ['What is 2+2?', 'Name a colour.'], p)
    assert [c.text for c in again] == [c.text for c in first] and engines['tiny-a'].stats()['calls'] == calls   # served from cache
    pool.engines.clear()   # the fixture closes the engine

def test_close_kills_actor(cluster, served):
    refs, _ = served
    e = make_ray_engine(refs['tiny-a'], SETTINGS, batch_size=2)          # no plan: device cpu -> no GPU
    handle = e.actor
    assert e.generate(['hi'], GenParams(max_new_tokens=3, temperature=0))[0].token_ids
    e.close(); e.close()                                                 # idempotent
    for _ in range(60):                                                  # ray.kill is asynchronous
        try: ray.get(handle.info.remote(), timeout=60); time.sleep(0.5)
        except ray.exceptions.RayActorError: break
    else: pytest.fail('the actor is still alive 30 s after close()')
    with pytest.raises(EngineError, match='was closed'): e.generate(['hi'], GenParams())

def test_load_error_is_the_same_moco_error(cluster, tmp_path):
    bad = tmp_path / 'not-a-model'; bad.mkdir()
    with pytest.raises(ModelError, match='has no config.json'):
        make_ray_engine(ModelRef('bad', str(bad)), SETTINGS)

def test_bad_requests_fail_before_ray(cluster):
    with pytest.raises(EngineError, match='needs 1 GPU'):
        make_ray_engine(ModelRef('m', '/x'), replace(SETTINGS, device='cuda'))
    with pytest.raises(EngineError, match='Unknown Ray option'):
        make_ray_engine(ModelRef('m', '/x'), replace(SETTINGS, options={'ray_adress': 'auto'}))

def test_unschedulable_actor_times_out(cluster, served):
    refs, _ = served
    s = replace(SETTINGS, options={'ray_actor_cpus': 3, 'ray_start_timeout': 3})   # the instance has 2 CPUs
    with pytest.raises(EngineError, match='did not start within 3s'): make_ray_engine(refs['tiny-a'], s)

def test_cluster_devices(cluster):
    devs = cluster_devices()
    assert [d.kind for d in devs] == ['cpu'] and devs[0].node and devs[0].name.endswith('/cpu')
    assert plan_models({'m': {'model_type': 'llama', 'hidden_size': 64, 'num_hidden_layers': 2, 'num_attention_heads': 2,
                              'vocab_size': 100}}, SETTINGS, devices=devs).devices_of('m') == (devs[0].name,)
