"""moco side by side with the reference toolkit (modelco 1.1.2) on the same job, the same models, in one run.

    python benchmarks/refine_vs_reference.py [--repeats 3] [--models DIR] [--no-reference] [--vllm-python PY]

The job is the reference's own: text_multiagent_refine on agieval_tiny (40 dev / 40 test), three tiny Llama models
(`../shared/bench/make_tiny_models.py`), round 2, 32 new tokens, T 0.7, top-p 0.9, batch 8. The reference runs through
`../shared/bench/reference_refine.sh`, which installs modelco 1.1.2 into its own virtual environment (never moco's).
Every side runs as a whole process. The sides are interleaved (reference, moco first, moco cold, moco warm, repeated) with
the load averages recorded around each run, and the report gives medians, so other work on a shared machine hits every side
alike. No time is a constant: the ratio is computed from this run.

moco runs three ways per round, each with a fresh generation cache: "first" on a fresh installation (an empty `$MOCO_HOME`),
where the engine loads the models through transformers and verifies, once, that its light load (no transformers modeling
code imported; nbs/engines/04d_lean) gives the same tensors, logits and tokenizer -- then "cold", the same job as every later
process on that installation runs it (loading light), and "warm" (everything cached). The headline ratio is against "cold";
"first" is reported beside it.

Then it sets the engine against the hardware: the machine's measured matmul rate (fp32, all cores), its causal-attention
rate at the job's shapes, and its memory read bandwidth; the job's FLOPs (matmuls and attention, from the model configs
and the token and (query, key) pair counts the HF engine recorded in the run's ledger); the achieved prefill and decode
FLOP/s; and the compute floor: the job's FLOPs at the matmul rate. Decoding reads the whole key/value cache at every
token, so its floor is also given as bytes read over the measured bandwidth.

`--vllm-python` runs the same job with `engine: vllm` (prefix caching on) under another interpreter that has vLLM,
side by side too. Writes benchmarks/refine_vs_reference.last.txt (or --out).
"""
import argparse, json, os, platform, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # this checkout's moco, whatever is installed
SHARED = ROOT.parent / 'shared'
BENCH = SHARED / 'bench'
MOCO = [sys.executable, '-c', 'import sys; sys.argv[0] = "moco"; from moco.cli import _entry; _entry()']
HYPER = {'max_response_length': 32, 'temperature': 0.7, 'top_p': 0.9, 'batch_size': 8, 'round': 2}

def lines_out(*a):
    "Print a report line and keep it (the report is written as it grows, so a failure later keeps what was measured)."
    print(*a, flush=True); REPORT.append(' '.join(str(x) for x in a))
    if OUT: OUT[0].write_text('\n'.join(REPORT) + '\n')
REPORT, OUT = [], []

def load(): return '/'.join(f'{x:.1f}' for x in os.getloadavg())

def machine()->str:
    try: name = next(l.split(':', 1)[1].strip() for l in subprocess.run(['lscpu'], capture_output=True, text=True).stdout.splitlines() if l.startswith('Model name'))
    except Exception: name = platform.processor() or 'unknown CPU'
    try: ram = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30
    except (ValueError, OSError): ram = float('nan')
    return f"{name}, {os.cpu_count()} cores, {ram:.0f} GiB RAM, {platform.system()} {platform.release()}"

def job_config(models:list, cache:Path, engine=None)->dict:
    "The reference's cfg.json (reference_refine.sh), in moco's format: the same keys, plus where the cache goes."
    cfg = {'method': 'text_multiagent_refine', 'task': 'agieval_tiny', 'task_type': 'multiple_choice', 'gpu_ids': [0, 1, 2],
           'model_names': models, 'hyperparameters': dict(HYPER), 'cache_dir': str(cache)}
    if engine: cfg['engine'] = engine
    return cfg

def busy_seconds()->float:
    "CPU-seconds all processes of the machine spent busy since boot (/proc/stat; idle and iowait excluded)."
    v = [int(x) for x in open('/proc/stat').readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / os.sysconf('SC_CLK_TCK')

def timed(cmd, env=None, cwd=None)->tuple:
    "Run a whole process; (wall seconds, load before, load after + the cores other processes kept busy meanwhile, completed process)."
    import resource
    before, b0 = load(), busy_seconds()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN); t = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall, r1 = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    others = max(0.0, (busy_seconds() - b0 - own) / wall)
    return wall, before, f"{load()}; other processes kept {others:.2f} cores busy", p

def run_reference(models_dir:Path, work:Path)->float:
    _, before, after, p = timed(['bash', str(BENCH / 'reference_refine.sh'), str(models_dir), str(work)])
    if p.returncode != 0: raise SystemExit(f"reference failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    wall = float(p.stdout.strip().splitlines()[-1].split('wall_s=')[1])
    return wall, before, after

def run_moco(cfg_path:Path, out:Path, py=None, env=None)->tuple:
    cmd = ([py, '-c', MOCO[2]] if py else MOCO) + ['run', str(cfg_path), '-o', str(out), '--no-progress']
    wall, before, after, p = timed(cmd, env=env)
    if p.returncode != 0: raise SystemExit(f"moco run failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return wall, before, after, json.loads((out / 'results.json').read_text())

# ---------------------------------------------------------------- the hardware
def hardware_rates()->dict:
    "fp32 matmul GFLOP/s (2048^3), causal attention GFLOP/s at the job's head shape, memory read GB/s; best of several, all cores."
    import torch
    F = torch.nn.functional
    def best(f, n=5):
        f(); b = 1e9
        for _ in range(n):
            t = time.perf_counter(); f(); b = min(b, time.perf_counter() - t)
        return b
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    mm = 2 * 2048**3 / best(lambda: a @ b) / 1e9
    L, H, D = 2048, 2, 32
    q, k, v = (torch.randn(1, H, L, D) for _ in range(3))
    attn = 4 * H * D * L * (L + 1) / 2 / best(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)) / 1e9
    big = torch.randn(2**26)   # 256 MiB: far beyond the caches
    bw = big.numel() * 4 / best(lambda: big.sum(), 3) / 1e9
    return {'threads': torch.get_num_threads(), 'matmul_gflops': mm, 'attention_gflops': attn, 'read_gbs': bw}

def model_dims(path:Path)->dict:
    c = json.loads((path / 'config.json').read_text())
    h, nh = c['hidden_size'], c['num_attention_heads']
    hd = c.get('head_dim') or h // nh
    nkv = c.get('num_key_value_heads') or nh
    lin = 2 * (h * nh * hd + 2 * h * nkv * hd + nh * hd * h + 3 * h * c['intermediate_size'])   # q, k, v, o, gate/up/down
    return {'layers': c['num_hidden_layers'], 'linear_flops_per_token': lin * c['num_hidden_layers'],
            'lm_head_flops': 2 * h * c['vocab_size'], 'attn_flops_per_pair': 4 * nh * hd * c['num_hidden_layers'],
            'kv_bytes_per_token': 2 * nkv * hd * 4 * c['num_hidden_layers']}

def flops(stats:dict, dims:dict)->dict:
    "FLOPs of what the engine computed, and of prefilling every prompt in full, from its recorded counts."
    d = dims
    rows = stats.get('decode_row_steps', 0)
    pre = stats['prefill_tokens'] * d['linear_flops_per_token'] + stats['prefill_attention_pairs'] * d['attn_flops_per_pair']
    full = stats['prompt_tokens'] * d['linear_flops_per_token'] + stats['prompt_attention_pairs'] * d['attn_flops_per_pair']
    dec = rows * (d['linear_flops_per_token'] + d['lm_head_flops']) + stats['decode_attention_pairs'] * d['attn_flops_per_pair']
    return {'prefill': pre, 'prefill_attention': stats['prefill_attention_pairs'] * d['attn_flops_per_pair'], 'prefill_full': full, 'decode': dec,
            'decode_kv_bytes': stats['decode_attention_pairs'] * d['kv_bytes_per_token']}

def med(xs): return statistics.median(xs)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--models', type=Path, default=None, help='folder for tiny0..tiny2 (made when missing)')
    ap.add_argument('--no-reference', action='store_true', help='moco only (no ratio)')
    ap.add_argument('--vllm-python', default=None, help='an interpreter with vLLM: also run the job with engine vllm')
    ap.add_argument('--throughput', action=argparse.BooleanOptionalAction, default=True, help="the engine against raw generate at batch 1/8/32 (engine_bench's check, on tiny0)")
    ap.add_argument('--out', type=Path, default=ROOT / 'benchmarks' / 'refine_vs_reference.last.txt')
    a = ap.parse_args()
    OUT.append(a.out)
    data = os.environ.get('MOCO_DATA_DIR') or str(SHARED / 'data' / 'moco')
    if not Path(data, 'agieval_tiny.json').exists(): raise SystemExit(f"agieval_tiny.json not found in {data}; set MOCO_DATA_DIR.")
    env = {**os.environ, 'MOCO_DATA_DIR': data, 'HF_HUB_OFFLINE': '1', 'PYTHONPATH': os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')]))}
    work = Path(tempfile.mkdtemp(prefix='moco-vs-ref-'))
    models_dir = a.models or work / 'models'
    if not all((models_dir / f'tiny{i}' / 'config.json').exists() for i in range(3)):
        subprocess.run([sys.executable, str(BENCH / 'make_tiny_models.py'), str(models_dir)], check=True, capture_output=True, env=env)
    models = [str(models_dir / f'tiny{i}') for i in range(3)]
    import torch, transformers
    lines_out(f"# python benchmarks/refine_vs_reference.py --repeats {a.repeats}{'  --vllm-python ' + a.vllm_python if a.vllm_python else ''}  ({time.strftime('%Y-%m-%d %H:%M')})")
    lines_out(f"machine: {machine()}; torch {torch.__version__}, transformers {transformers.__version__}; load averages (1/5/15 min) at start {load()}")
    lines_out(f"job: text_multiagent_refine, agieval_tiny 40/40, models tiny0..2 ({models_dir}), {json.dumps(HYPER)}")
    hw = hardware_rates()
    lines_out(f"hardware ({hw['threads']} threads, load {load()}): fp32 matmul {hw['matmul_gflops']:.0f} GFLOP/s, causal attention (2 heads x 32, 2k tokens) "
              f"{hw['attention_gflops']:.0f} GFLOP/s, memory read {hw['read_gbs']:.1f} GB/s")
    rows = {'reference': [], 'moco first': [], 'moco cold': [], 'moco warm': []}
    if a.vllm_python: rows['moco vllm cold'] = []
    cold_results = []
    def cold_run(r, k, henv):
        "A cold run (a fresh generation cache, the light load this round's installation verified): its wall time and results."
        cfg = work / f'cfg{r}{k}.json'; cfg.write_text(json.dumps(job_config(models, work / f'cache{r}{k}')))
        wall, b, e, res = run_moco(cfg, work / f'cold{r}{k}', env=henv)
        rows['moco cold'].append(wall); cold_results.append(res)
        eng = sum(v.get('prefill_seconds', 0) + v.get('decode_seconds', 0) + v.get('padded_seconds', 0) for v in res['cost']['engines'].values())
        same = [json.loads(l)['output'] for l in (work / f'first{r}' / 'samples.jsonl').read_text().splitlines()] == \
               [json.loads(l)['output'] for l in (work / f'cold{r}{k}' / 'samples.jsonl').read_text().splitlines()]
        lines_out(f"round {r + 1} moco cold {'before' if k == 'a' else 'after '} {wall:5.1f} s  (loads light; in-process {res['wall_seconds']:.1f} s, engine {eng:.1f} s; "
                  f"outputs {'identical to' if same else 'DIFFERENT FROM'} the first run's; load {b} -> {e})")
        return cfg
    for r in range(a.repeats):
        # moco on a fresh installation (an empty $MOCO_HOME): its models load through transformers, and the light load is verified
        # and recorded there (see nbs/engines/04d_lean); then the cold run every later process is, on the same installation,
        # once right before the reference and once right after it: this VM's speed drifts over minutes, and a ~12 s moco run
        # falls inside one spell where the reference's ~3 minutes average over several
        home = work / f'home{r}'; henv = {**env, 'MOCO_HOME': str(home)}
        fcfg = work / f'fcfg{r}.json'; fcfg.write_text(json.dumps(job_config(models, work / f'fcache{r}')))
        wall, b, e, _ = run_moco(fcfg, work / f'first{r}', env=henv)
        rows['moco first'].append(wall)
        recs = len(json.loads((home / 'light-load.json').read_text())) if (home / 'light-load.json').exists() else 0
        lines_out(f"round {r + 1} moco first  {wall:6.1f} s  (a fresh installation: loads through transformers, verifies the light load: {recs} record(s) made; load {b} -> {e})")
        cold_run(r, 'a', henv)
        if not a.no_reference:
            wall, b, e = run_reference(models_dir, work / f'ref{r}')
            rows['reference'].append(wall); lines_out(f"round {r + 1} reference  {wall:7.1f} s  (load {b} -> {e})")
        cfg = cold_run(r, 'b', henv)
        wall, b, e, wres = run_moco(cfg, work / f'warm{r}', env=henv)
        rows['moco warm'].append(wall)
        lines_out(f"round {r + 1} moco warm  {wall:7.2f} s  (generated {wres['cost']['generated_requests']} requests; load {b} -> {e})")
        if a.vllm_python:
            vcfg = work / f'vcfg{r}.json'
            vcfg.write_text(json.dumps(job_config(models, work / f'vcache{r}', {'kind': 'vllm', 'options': {'max_model_len': 8192, 'enable_prefix_caching': True}})))
            wall, b, e, vres = run_moco(vcfg, work / f'vllm{r}', py=a.vllm_python, env={**env, 'VLLM_ALLOW_LONG_MAX_MODEL_LEN': '1'})
            rows['moco vllm cold'].append(wall)
            lines_out(f"round {r + 1} moco vllm  {wall:7.1f} s  (prefill tokens computed {vres['cost']['prefill_tokens_computed']} of {vres['cost']['prompt_tokens']}; load {b} -> {e})")
    lines_out('')
    lines_out('medians: ' + ', '.join(f"{k} {med(v):.2f} s" for k, v in rows.items() if v) + f"  (load at end {load()})")
    cold, warm = med(rows['moco cold']), med(rows['moco warm'])
    if rows['reference']:
        ref = med(rows['reference'])
        lines_out(f"RATIO reference / moco cold = {ref / cold:.1f}x  (target >= 15x; medians of {len(rows['reference'])} reference and {len(rows['moco cold'])} cold runs)")
        lines_out("      by round (the reference against the cold runs right before and after it): " +
                  ', '.join(f"{x / med(rows['moco cold'][2 * i:2 * i + 2]):.1f}x" for i, x in enumerate(rows['reference'])))
        lines_out(f"      reference / moco first (a fresh installation, verifying the light load) = {ref / med(rows['moco first']):.1f}x")
        if rows.get('moco vllm cold'): lines_out(f"       reference / moco vllm cold = {ref / med(rows['moco vllm cold']):.1f}x")
    lines_out(f"WARM  moco warm / moco cold = {100 * warm / cold:.1f}%  (target <= 5%; whole process, nothing generated)")
    c = cold_results[-1]['cost']
    lines_out(f"PREFIX prefill tokens computed / prompt tokens = {c['prefill_tokens_computed']} / {c['prompt_tokens']} = "
              f"{100 * c['prefill_tokens_computed'] / c['prompt_tokens']:.1f}%  (target <= 65%; ledger)")
    # ---- against the hardware (the median cold run's engine counters)
    mid = sorted(range(len(cold_results)), key=lambda i: rows['moco cold'][i])[len(cold_results) // 2]
    res = cold_results[mid]
    tot = {'prefill': 0, 'prefill_attention': 0, 'prefill_full': 0, 'decode': 0, 'decode_kv_bytes': 0}
    secs = {'prefill': 0.0, 'decode': 0.0}
    for m, st in res['cost']['engines'].items():
        f = flops(st, model_dims(Path(m)))
        for k in tot: tot[k] += f[k]
        secs['prefill'] += st['prefill_seconds']; secs['decode'] += st['decode_seconds'] + st.get('padded_seconds', 0)
    mm, bw = hw['matmul_gflops'] * 1e9, hw['read_gbs'] * 1e9
    floor = (tot['prefill'] + tot['decode']) / mm
    floor_full = (tot['prefill_full'] + tot['decode']) / mm
    floor_mem = tot['decode_kv_bytes'] / bw
    engine = secs['prefill'] + secs['decode']
    lines_out('')
    lines_out(f"engine (the median cold run, the upper of the middle two for an even count: {rows['moco cold'][mid]:.1f} s): prefill {secs['prefill']:.2f} s for {tot['prefill'] / 1e9:.0f} GFLOP = "
              f"{tot['prefill'] / max(secs['prefill'], 1e-9) / 1e9:.1f} GFLOP/s; decode {secs['decode']:.2f} s for {tot['decode'] / 1e9:.1f} GFLOP = "
              f"{tot['decode'] / max(secs['decode'], 1e-9) / 1e9:.1f} GFLOP/s, reading {tot['decode_kv_bytes'] / 1e9:.1f} GB of key/value cache = "
              f"{tot['decode_kv_bytes'] / max(secs['decode'], 1e-9) / 1e9:.1f} GB/s")
    lines_out(f"compute floor = job FLOPs at the matmul rate: {(tot['prefill'] + tot['decode']) / 1e9:.0f} GFLOP / {hw['matmul_gflops']:.0f} GFLOP/s = {floor:.2f} s "
              f"(prefilling every prompt in full: {(tot['prefill_full'] + tot['decode']) / 1e9:.0f} GFLOP = {floor_full:.2f} s); "
              f"decode memory floor = {tot['decode_kv_bytes'] / 1e9:.1f} GB / {hw['read_gbs']:.1f} GB/s = {floor_mem:.2f} s")
    lines_out(f"FLOOR engine time / compute floor = {engine:.2f} / {floor:.2f} s = {engine / floor:.1f}x; with the decode memory floor "
              f"({tot['prefill'] / mm + max(tot['decode'] / mm, floor_mem):.2f} s) {engine / (tot['prefill'] / mm + max(tot['decode'] / mm, floor_mem)):.1f}x; "
              f"whole cold process / compute floor = {cold / floor:.1f}x  (target <= 2x)")
    att = hw['attention_gflops'] * 1e9
    kern = (tot['prefill'] - tot['prefill_attention']) / mm + tot['prefill_attention'] / att + max(tot['decode'] / mm, floor_mem)
    lines_out(f"KERNELS the same work at the rates this machine's exact fp32 kernels reach (prefill attention at the measured causal-attention "
              f"rate, {hw['attention_gflops']:.0f} GFLOP/s; the rest at the matmul rate; decode at its memory floor) = {kern:.2f} s: "
              f"engine {engine / kern:.1f}x that; the compute floor is {kern / floor:.1f}x below it")
    if a.throughput:
        import contextlib, io
        sys.path.insert(0, str(ROOT / 'benchmarks'))
        import engine_bench
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf): engine_bench.bench_throughput(models[0])
        lines_out('')
        for l in buf.getvalue().strip().splitlines(): lines_out(l.replace('[2] ', 'ENGINE vs raw generate, tiny0, '))
    a.out.write_text('\n'.join(REPORT) + '\n')
    print(f"report: {a.out}")
    shutil.rmtree(work, ignore_errors=True)

if __name__ == '__main__':
    main()
