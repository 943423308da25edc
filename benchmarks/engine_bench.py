"""Issue-4 targets, each printed as a ratio from one run of this script.

    python benchmarks/engine_bench.py [--models zoo|tiny] [--quick]

1. The reference's `text_multiagent_refine` generation workload (3 models, agieval_tiny 40 dev / 40 test,
   dev pass + 2 rounds + summary, 32 new tokens, batch 8) through moco's pool, cold. The comparison with the reference
   itself runs both sides on the same models in one run: benchmarks/refine_vs_reference.py.
2. HF engine throughput vs raw `model.generate` at batch 1, 8, 32 on one model. Target: >= 0.9x.
3. A rerun of the finished config with the cache warm vs the cold run. Target: <= 5% of the cold wall time.
4. Each distinct model loaded once; generated requests <= unique (model, prompt, params, seed, index) requests.
5. Joint decoding of 3 models for 128 tokens: KV-cached step API vs re-encoding the whole prefix every token.
   Target: >= 5x.
Needs MOCO_DATA_DIR (agieval_tiny.json). Uses the tiny zoo when it is built, else tiny random models.
"""
import argparse, json, os, sys, tempfile, time
from pathlib import Path

os.environ.setdefault('HF_HUB_OFFLINE', '1')

def models(kind):
    if kind == 'zoo':
        from moco.zoo import builder as zoo
        zoo.ensure()
        return ['zoo/arith', 'zoo/capitals', 'zoo/habitats']
    from moco.tinymodels import tiny_llama
    root = Path(tempfile.mkdtemp())
    return [tiny_llama(str(root / f'm{i}'), seed=i, hidden=128, heads=4, layers=3) for i in range(3)]

def bench_workload(names, tmp):
    from moco.run import run
    cfg = {'method': 'text_multiagent_refine', 'task': 'agieval_tiny', 'task_type': 'multiple_choice', 'model_names': names,
           'cache_dir': str(tmp / 'cache'), 'seed': 1,
           'hyperparameters': {'max_response_length': 32, 'temperature': 0.7, 'top_p': 0.9, 'batch_size': 8, 'round': 2}}
    t = time.time(); cold = run(cfg, output_dir=tmp / 'cold', progress=False); t_cold = time.time() - t
    t = time.time(); warm = run(cfg, output_dir=tmp / 'warm', progress=False); t_warm = time.time() - t
    c = cold.results['cost']
    print(f"[1] refine workload cold: {t_cold:.1f}s (side by side with the reference: benchmarks/refine_vs_reference.py)")
    print(f"[3] warm rerun: {t_warm:.2f}s = {100 * t_warm / t_cold:.2f}% of cold (target <= 5%)")
    ok = c['generated_requests'] <= c['unique_requests'] and set(c['model_loads'].values()) == {1}
    print(f"[4] model loads {c['model_loads']}; generated {c['generated_requests']} for {c['unique_requests']} unique requests "
          f"({c['requests']} asked for); warm run generated {warm.results['cost']['generated_requests']} -> {'OK' if ok else 'FAIL'}")
    return t_cold

def bench_throughput(path, n=96, new=64, repeats=3):
    "The engine's generate against raw transformers generate on the same prompts, batch 1/8/32: best of `repeats`, the two sides interleaved."
    import torch
    from moco.engines.hf import HFEngine
    from moco.core import GenParams
    eng = HFEngine(path, device='cpu', dtype='float32', prefix_cache_gb=0)   # repeated prompts: no stored prefixes, like raw generate
    prompts = [f"Question {i}: what is {i} plus {2*i}? Explain briefly." for i in range(n)]
    g = GenParams(max_new_tokens=new, temperature=0)
    tok = eng.tokenizer
    model = HFEngine(path, device='cpu', dtype='float32', prefix_cache_gb=0, lean=False).model   # transformers' own forward: raw generate
    ids = [eng.render(p)[1] for p in prompts]
    def raw(bs):
        with eng.threads():   # same thread policy as the engine
          for s in range(0, n, bs):
            b = ids[s:s + bs]; w = max(map(len, b)); pad = tok.pad_token_id
            x = torch.tensor([[pad] * (w - len(r)) + r for r in b]); m = (torch.arange(w)[None] >= torch.tensor([w - len(r) for r in b])[:, None]).long()
            with torch.inference_mode():
              model.generate(input_ids=x, attention_mask=m, max_new_tokens=new, do_sample=False, pad_token_id=pad, eos_token_id=eng.eos_ids)
    for bs in (1, 8, 32):
        eng.batch_size = bs
        eng.generate(prompts[:bs], g)   # warm-up
        t_eng = t_raw = float('inf')
        for _ in range(repeats):
            t = time.perf_counter(); eng.generate(prompts, g); t_eng = min(t_eng, time.perf_counter() - t)
            t = time.perf_counter(); raw(bs); t_raw = min(t_raw, time.perf_counter() - t)
        print(f"[2] batch {bs:>2}: engine {t_eng:.2f}s, raw generate {t_raw:.2f}s -> {t_raw / t_eng:.2f}x of raw (target >= 0.9x; {n} prompts, best of {repeats})")

def bench_joint(names, steps=128):
    import torch
    from moco.serving.pool import ModelPool
    from moco.core import GenParams
    from moco.engines.decoding import joint_decode, mean_logits
    pool = ModelPool(names)
    engines = [pool.engine(n) for n in names]
    prompts = ["Explain, step by step, how to add two numbers with carrying."] * 4
    g = GenParams(max_new_tokens=steps, temperature=0)
    big = GenParams(max_new_tokens=steps, temperature=0, stop=())
    for e in engines: e.eos_ids = [-1]   # never stop early: time exactly `steps` tokens
    t = time.time(); joint_decode(engines, prompts, g, mean_logits); t_step = time.time() - t
    # baseline: re-encode the full prefix with every model at every token (what the reference does, with a mask)
    t = time.time()
    lead = engines[0]; ids = [lead.render(p)[1] for p in prompts]
    for _ in range(steps):
        w = max(map(len, ids)); pad = lead.tokenizer.pad_token_id
        x = torch.tensor([[pad] * (w - len(r)) + r for r in ids]); m = (x != pad).long() | (torch.arange(w)[None] >= torch.tensor([w - len(r) for r in ids])[:, None]).long()
        pos = (m.cumsum(-1) - 1).clamp_min(0)
        with torch.inference_mode():
            ls = [e.model(input_ids=x, attention_mask=m, position_ids=pos).logits[:, -1].float() for e in engines]
        nxt = mean_logits(ls).argmax(-1).tolist()
        ids = [r + [t_] for r, t_ in zip(ids, nxt)]
    t_re = time.time() - t
    print(f"[5] joint decoding of 3 models, {steps} tokens: step API {t_step:.2f}s, re-encoding {t_re:.2f}s -> {t_re / t_step:.1f}x (target >= 5x)")

if __name__ == '__main__':
    ap = argparse.ArgumentParser(); ap.add_argument('--models', choices=['zoo', 'tiny'], default=None); ap.add_argument('--quick', action='store_true')
    a = ap.parse_args()
    kind = a.models
    if kind is None:
        try:
            from moco.zoo import builder as zoo; kind = 'zoo' if zoo.is_built() else 'tiny'
        except Exception: kind = 'tiny'
    names = models(kind)
    print(f"models: {kind} {names}  (cpus: {os.cpu_count()}, load: {os.getloadavg()[0]:.1f})")
    tmp = Path(tempfile.mkdtemp())
    from moco.serving.pool import ModelPool
    bench_throughput(ModelPool([names[0]]).refs[names[0]].base if not names[0].startswith('zoo/') else __import__('moco.zoo.builder', fromlist=['x']).model_path(names[0]))
    bench_joint(names, 32 if a.quick else 128)
    if not a.quick: bench_workload(names, tmp)
