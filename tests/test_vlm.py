"""VLM tasks (POPE, SEED-Bench): answer parsing, metrics against hand computations, the
official layouts, and the rate-task pipeline end to end with a tiny random transformers VLM
built from a config and saved to disk (model, tokenizer, image processor, chat template)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import photo_like, save_rgb, write_codec_checkpoint

from lic.evaluation import run
from lic.tasks import DatasetLayoutError, create_task
from lic.tasks.answers import parse_choice, parse_yes_no
from lic.tasks.vlm import load_vlm
from lic.tasks.vqa import ChoiceAccumulator, Question, YesNoAccumulator
from lic.weights import WeightsUnavailableError

transformers = pytest.importorskip("transformers")

SPECIAL_WORDS = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]
PLAIN_WORDS = "yes no A B C D there is a the in image answer dog cat red two one not maybe . ?"
WORDS = SPECIAL_WORDS + PLAIN_WORDS.split(" ") + [":", "user", "assistant"]
SPECIAL = range(len(SPECIAL_WORDS))  # pad, bos, eos, unk and the image token
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} : {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }} {% endif %}"
    "{% endfor %}{% endfor %}{% if add_generation_prompt %}assistant : {% endif %}"
)


# ---- a tiny LLaVA (CLIP vision tower + Llama) with its processor, saved like a hub model ----
def word_tokenizer(words: list[str], image_tokens: dict[str, str]):
    """A whitespace word-level tokenizer over `words` (the first four: pad, bos, eos, unk),
    with the model family's image tokens as named special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        extra_special_tokens=image_tokens,
    )


def tiny_text_config(vocab_size: int) -> dict:
    return {
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }


def save_model(model_class, config, processor, folder: Path, n_special: int = len(SPECIAL)) -> Path:
    """A seeded random model and its processor, saved like a hub model. A random model
    would often stop at once: suppressing the special tokens (the first `n_special`) makes
    it always say words."""
    torch.manual_seed(0)
    model = model_class(config)
    model.generation_config.suppress_tokens = list(range(n_special))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def save_tiny_vlm(folder: Path) -> Path:
    tokenizer = word_tokenizer(WORDS, {"image_token": "<image>"})
    processor = transformers.LlavaProcessor(
        image_processor=transformers.CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=tokenizer,
        patch_size=16,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        image_token="<image>",
        num_additional_image_tokens=1,
    )
    config = transformers.LlavaConfig(
        vision_config=transformers.CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=16,
        ),
        text_config=transformers.LlamaConfig(**tiny_text_config(len(WORDS))),
        image_token_index=WORDS.index("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    return save_model(transformers.LlavaForConditionalGeneration, config, processor, folder)


def scripted_copy(folder: Path, target: Path, word: str) -> Path:
    """The same model, whose generation config biases `word` far above every other token and
    then the end of the sequence: it answers `word` and stops, whatever it is asked."""
    shutil.copytree(folder, target)
    generation = transformers.GenerationConfig.from_pretrained(folder)
    word_id, eos_id = WORDS.index(word), WORDS.index("</s>")
    generation.suppress_tokens = None
    generation.sequence_bias = [[[word_id], 100.0], [[word_id, eos_id], 1000.0]]
    generation.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def vlms(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vlm")
    random_vlm = save_tiny_vlm(root / "random")
    return {
        "random": random_vlm,
        "yes": scripted_copy(random_vlm, root / "always-yes", "yes"),
        "B": scripted_copy(random_vlm, root / "always-B", "B"),
    }


# ---- fixture datasets in the released layouts -------------------------------------------
POPE_SPLITS = {  # split -> (image index, question, label); 4 of the 6 labels are "yes"
    "random": [
        (0, "Is there a dog in the image?", "yes"),
        (0, "Is there a cat in the image?", "yes"),
        (1, "Is there a car in the image?", "no"),
        (2, "Is there a person in the image?", "yes"),
    ],
    "adversarial": [(1, "Is there a dog in the image?", "yes"), (2, "Is there a cup?", "no")],
}


def pope_image(i: int) -> str:
    return f"COCO_val2014_{i:012d}.jpg"


def make_pope(root: Path) -> Path:
    (root / "val2014").mkdir(parents=True)
    for i in range(3):
        save_rgb(root / "val2014" / pope_image(i), photo_like(60 + 8 * i, 80, seed=i))
    qid = 0
    for split, questions in POPE_SPLITS.items():
        lines = []
        for image, text, label in questions:
            qid += 1
            row = {"question_id": qid, "image": pope_image(image), "text": text, "label": label}
            lines.append(json.dumps(row))
        (root / f"coco_pope_{split}.json").write_text("\n".join(lines) + "\n")
    return root


SEED_QUESTIONS = [  # (data_id, type id, answer); the video question must be skipped
    ("1454426_2591111986.jpg", 1, "B"),
    ("1454426_2591111986.jpg", 1, "A"),
    ("2047822_1166419339", 2, "B"),  # released ids may lack the extension
]


def make_seedbench(root: Path) -> Path:
    (root / "SEED-Bench-image").mkdir(parents=True)
    save_rgb(root / "SEED-Bench-image" / "1454426_2591111986.jpg", photo_like(70, 90, seed=5))
    save_rgb(root / "SEED-Bench-image" / "2047822_1166419339.jpg", photo_like(64, 64, seed=6))
    questions = [
        {
            "answer": answer,
            "choice_a": "one",
            "choice_b": "two",
            "choice_c": "red",
            "choice_d": "a dog",
            "data_id": data_id,
            "data_type": "image",
            "question": f"Question {n}: how many?",
            "question_id": str(100 + n),
            "question_type_id": type_id,
        }
        for n, (data_id, type_id, answer) in enumerate(SEED_QUESTIONS)
    ]
    questions.append({**questions[0], "data_type": "video", "data_id": "v.mp4", "question_id": "9"})
    data = {
        "question_type": {"Scene Understanding": 1, "Instance Identity": 2},
        "questions": questions,
    }
    (root / "SEED-Bench.json").write_text(json.dumps(data))
    return root


# ---- answer parsing ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Yes", "yes"),
        ("yes.", "yes"),
        ("YES!!!", "yes"),
        ("  Yes, there is a dog in the image.", "yes"),
        ("No", "no"),
        ("no, there is no dog.", "no"),
        ("Nope.", "no"),
        ("The answer is no.", "no"),
        ("Answer: yes", "yes"),
        ("Yes, but no", "yes"),  # the first word commits
        ("There is a dog in the image.", None),  # POPE's script would say yes
        ("Maybe yes, maybe no.", None),
        ("I am not sure", None),
        ("", None),
        ("   \n ", None),
        ("\n\nyes", "yes"),
        ("??!!", None),
        ("yesterday", None),
        ("nothing", None),
        ("<unk> <unk>", None),
        # explicit negations answer no
        ("There is not a cat in the image.", "no"),
        ("I do not see a person.", "no"),
        ("There isn't any bicycle.", "no"),
        ("There isn\u2019t a dog here.", "no"),
        ("I can't see any cup in this picture.", "no"),
        ("None.", "no"),
        # markdown, and the answer first with an explanation on later lines
        ("**Yes**", "yes"),
        ("**No**, the image shows a street.", "no"),
        ("No\nThe image shows only a street, with a dog in the corner.", "no"),
        ("Yes.\n\nThere is no doubt: a cat sits on the left.", "yes"),
        # hedges stay unparsed, even when they contain a negation
        ("Not sure.", None),
        ("I cannot tell from this image.", None),
        ("It is unclear whether there is a dog.", None),
        ("I don't know.", None),
        ("Maybe.", None),
    ],
)
def test_yes_no_parsing(answer, expected):
    assert parse_yes_no(answer) == expected


CHOICES = ("One", "Two", "Three", "A dog")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("B", "B"),
        ("b", "B"),
        ("(C)", "C"),
        ("C.", "C"),
        ("D)", "D"),
        ("B. Two", "B"),
        ("(A) One", "A"),
        ("B is correct", "B"),
        ("The answer is C.", "C"),
        ("Answer: (D)", "D"),
        ("option A", "A"),
        ("Two", "B"),
        ("three.", "C"),
        ("I count two of them", "B"),
        ("A dog", "D"),  # the choice's text, not the letter A
        ("A dog is sitting there", "D"),
        ("E", None),  # not one of the four letters
        ("The answer is E", None),
        ("B or C", None),
        ("one or two", None),
        ("", None),
        ("!!!", None),
        ("the answer is a dog", "D"),  # lowercase 'a' is an article
        ("I don't know", None),
        # markdown; a letter, then an explanation on later lines; a named letter in any case
        ("**B**", "B"),
        ("**C.** Three", "C"),
        ("B\nThere are two towels on the rail, not one.", "B"),
        ("(d)\nBecause a dog is visible.", "D"),
        ("Answer: b", "B"),
        ("answer: (c)", "C"),
        ("The correct option is d.", "D"),
        ("Looking at the image...\nThe answer is B.", "B"),
        ("CHOICE: a", "A"),
        ("Two\nOne could also say three.", "B"),  # the first line commits
    ],
)
def test_choice_parsing(answer, expected):
    assert parse_choice(answer, CHOICES) == expected


# ---- metrics against hand computations -----------------------------------------------------
def test_pope_metrics_match_hand_computation():
    truths = ["yes", "yes", "yes", "yes", "no", "no", "no", "no"]
    answers = ["Yes", "yes.", "No", "a dog", "No", "Yes", "no", "The answer is no."]
    # parsed: yes yes no - | no yes no no  ->  TP 2, FN 1 (+1 unparsed), FP 1, TN 3
    questions = [
        Question(str(i), "q", t, "random" if i < 4 else "popular") for i, t in enumerate(truths)
    ]
    acc = YesNoAccumulator()
    acc.update([answers[:3], answers[3:]], [questions[:3], questions[3:]], ["a", "b"])
    scores = acc.compute()
    expected = {
        "accuracy": 62.5,  # (2 + 3) / 8
        "precision": 200 / 3,  # 2 / (2 + 1)
        "recall": 50.0,  # 2 / 4 positives, the unparsed one counts as a miss
        "f1": 400 / 7,  # 2 P R / (P + R) = 2 (2/3)(1/2) / (7/6)
        "yes_ratio": 37.5,  # 3 / 8
        "unparsed": 12.5,  # 1 / 8
    }
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value), key
    assert scores["random/accuracy"] == pytest.approx(50.0)  # yes yes - no(for yes)
    assert scores["random/unparsed"] == pytest.approx(25.0)
    assert scores["popular/accuracy"] == pytest.approx(75.0)
    assert scores["popular/precision"] == 0.0 and scores["popular/f1"] == 0.0  # no positives

    halves = YesNoAccumulator(), YesNoAccumulator()
    halves[0].update([answers[:5]], [questions[:5]], ["a"])
    halves[1].update([answers[5:]], [questions[5:]], ["b"])
    merged = YesNoAccumulator()
    for half in halves:
        merged.merge(half.state())
    assert merged.compute() == scores


def test_seedbench_metrics_match_hand_computation():
    choices = ("red", "green", "blue", "black")
    rows = [("A", "A"), ("B", "(B) green"), ("C", "blue"), ("D", "C"), ("A", "hmm"), ("B", "")]
    questions = [
        Question(str(i), "q", truth, "Scene" if i < 3 else "Counting", choices)
        for i, (truth, _) in enumerate(rows)
    ]
    acc = ChoiceAccumulator()
    acc.update([[answer for _, answer in rows]], [questions], ["img"])
    scores = acc.compute()
    assert scores["accuracy"] == pytest.approx(50.0)  # 3 right of 6
    assert scores["unparsed"] == pytest.approx(100 / 3)  # "hmm" and ""
    assert scores["Scene/accuracy"] == pytest.approx(100.0)
    assert scores["Counting/accuracy"] == 0.0
    assert [r["parsed"] for r in acc.records()] == ["A", "B", "C", "C", None, None]


# ---- layouts -------------------------------------------------------------------------------
def test_pope_layout_groups_questions_by_image(tmp_path):
    task = create_task("pope", make_pope(tmp_path / "pope"), weights="none")
    assert len(task) == 3  # images, each coded once
    per_image = {path.name: [q.group for q in qs] for path, qs in task.samples}
    assert per_image[pope_image(0)] == ["random", "random"]
    assert per_image[pope_image(2)] == ["adversarial", "random"]  # files in name order
    assert task.description()["n_questions"] == 6
    image, questions = task.load(1)
    assert image.shape == (3, 68, 80) and [q.truth for q in questions] == ["yes", "no"]


def test_seedbench_layout_keeps_image_questions_only(tmp_path):
    task = create_task("seedbench", make_seedbench(tmp_path / "seed"), weights="none")
    assert len(task) == 2 and task.description()["n_questions"] == 3
    path, questions = task.samples[0]
    assert path.name == "1454426_2591111986.jpg"
    assert [q.truth for q in questions] == ["B", "A"]
    assert questions[0].group == "Scene Understanding"
    assert task.samples[1][0].name == "2047822_1166419339.jpg"  # extension added
    prompt = task.prompt(questions[0])
    assert prompt.splitlines()[1:5] == ["A. one", "B. two", "C. red", "D. a dog"]
    assert prompt.endswith("Answer with the option's letter from the given choices directly.")


def _drop_image(root: Path) -> None:
    (root / "val2014" / pope_image(2)).unlink()


def _bad_label(root: Path) -> None:
    path = root / "coco_pope_random.json"
    path.write_text(path.read_text().replace('"label": "no"', '"label": "maybe"'))


def _not_jsonl(root: Path) -> None:
    (root / "coco_pope_random.json").write_text("{ truncated")


def _no_question_files(root: Path) -> None:
    for path in root.glob("coco_pope_*.json"):
        path.unlink()


def _seed_v2(root: Path) -> None:
    data = json.loads((root / "SEED-Bench.json").read_text())
    for q in data["questions"]:
        q["data_type"] = "Single Image"
    (root / "SEED-Bench.json").write_text(json.dumps(data))


def _seed_bad_answer(root: Path) -> None:
    data = json.loads((root / "SEED-Bench.json").read_text())
    data["questions"][0]["answer"] = "E"
    (root / "SEED-Bench.json").write_text(json.dumps(data))


def _seed_missing_choice(root: Path) -> None:
    data = json.loads((root / "SEED-Bench.json").read_text())
    del data["questions"][1]["choice_c"]
    (root / "SEED-Bench.json").write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("task", "damage", "message"),
    [
        ("pope", _drop_image, "missing"),
        ("pope", _bad_label, "label yes/no"),
        ("pope", _not_jsonl, "not JSON lines"),
        ("pope", _no_question_files, "no POPE question files"),
        ("seedbench", _seed_v2, "SEED-Bench-2"),
        ("seedbench", _seed_bad_answer, "answer 'E'"),
        ("seedbench", _seed_missing_choice, "lacks 'choice_c'"),
        ("seedbench", lambda root: (root / "SEED-Bench.json").unlink(), "SEED-Bench.json"),
    ],
)
def test_malformed_vlm_datasets_are_clear_errors(tmp_path, task, damage, message):
    root = (make_pope if task == "pope" else make_seedbench)(tmp_path / task)
    damage(root)
    with pytest.raises(DatasetLayoutError, match=message):
        create_task(task, root, weights="none")


# ---- the back end ---------------------------------------------------------------------------
def test_batched_generation_equals_one_prompt_at_a_time(vlms):
    vlm = load_vlm(str(vlms["random"]), "DEFAULT", torch.device("cpu"))
    images = [photo_like(40 + 9 * i, 50 + 5 * i, seed=i) for i in range(5)]
    questions = ["Is there a dog?", "two", "Is there a red cat in the image?", "A", "maybe ?"]
    batched = vlm.answer(images, questions)
    vlm.prompts_per_batch = 1
    assert vlm.answer(images, questions) == batched  # left padding does not change answers
    assert all(answer.split() for answer in batched)
    assert len(set(batched)) > 1  # the answers depend on the image and question


def test_option_loglikelihoods_equal_scoring_each_option_alone(vlms):
    """SEED-Bench's likelihood protocol: the batched, right-padded scores equal a forward pass
    on each prompt + option alone, and the mean is over the option's own tokens."""
    vlm = load_vlm(str(vlms["random"]), "DEFAULT", torch.device("cpu"))
    image = photo_like(48, 64, seed=7)
    options = ["two", "a red cat", "one", "the dog in the image"]  # 1 to 4 tokens: padding
    scores = vlm.option_loglikelihoods(image, "how many ?", options)
    pixels = image.mul(255).round().to(torch.uint8)
    prompt = vlm.prompt("how many ?")
    start = vlm.processor(images=[pixels], text=[prompt], return_tensors="pt")["input_ids"].shape[1]
    for option, score in zip(options, scores, strict=True):
        inputs = vlm.processor(images=[pixels], text=[prompt + option], return_tensors="pt")
        with torch.no_grad():
            log_probs = torch.log_softmax(vlm.model(**inputs).logits[0].double(), -1)
        ids = inputs["input_ids"][0]
        by_hand = [float(log_probs[t - 1, ids[t]]) for t in range(start, len(ids))]
        assert len(by_hand) == len(option.split())
        assert score == pytest.approx(sum(by_hand) / len(by_hand), abs=1e-4)
    assert len(set(scores)) == 4
    assert vlm.tokenizer.padding_side == "left"  # generation's padding is restored


@pytest.mark.slow
def test_seedbench_likelihood_protocol_through_the_harness(vlms, tmp_path):
    out = tmp_path / "out"
    rows = run(
        tasks=["seedbench"],
        data_roots={"seedbench": str(make_seedbench(tmp_path / "seed"))},
        out=out,
        workers=0,
        device="cpu",
        task_model=str(vlms["random"]),
        progress=False,
        seed_protocol="likelihood",
        bootstrap=50,
    )
    (answers,) = (out / "answers").glob("seedbench__*.jsonl")
    records = [json.loads(line) for line in answers.read_text().splitlines()]
    assert len(records) == 3
    for record in records:
        scores = record["loglikelihoods"]
        best = max(scores, key=scores.get)
        assert record["parsed"] == best and record["answer"].startswith(f"{best}. ")
    right = sum(r["parsed"] == r["truth"] for r in records)
    values = {r["metric"]: r["value"] for r in rows}
    assert values["accuracy"] == pytest.approx(100 * right / 3) and values["unparsed"] == 0
    cell = json.loads(next((out / "cells").glob("seedbench__*.json")).read_text())
    assert cell["meta"]["protocol"] == "likelihood"


def save_tiny_qwen2_5_vl(folder: Path) -> Path:
    """Qwen2.5-VL: dynamic resolution and 3D rotary positions."""
    vision = ["<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|video_pad|>"]
    words = [*SPECIAL_WORDS[:4], *vision, *WORDS[len(SPECIAL_WORDS) :]]
    names = ("image_token", "vision_start_token", "vision_end_token", "video_token")
    tokenizer = word_tokenizer(words, dict(zip(names, vision, strict=True)))
    template = CHAT_TEMPLATE.replace("<image>", "<|vision_start|> <|image_pad|> <|vision_end|>")
    processor = transformers.Qwen2_5_VLProcessor(
        image_processor=transformers.Qwen2VLImageProcessor(
            min_pixels=4 * 28 * 28, max_pixels=16 * 28 * 28
        ),
        tokenizer=tokenizer,
        video_processor=transformers.Qwen2VLVideoProcessor(),
        chat_template=template,
    )
    config = transformers.Qwen2_5_VLConfig(
        text_config={
            **tiny_text_config(len(words)),
            "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 32,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        },
        **{f"{name}_id": words.index(token) for name, token in zip(names, vision, strict=True)},
    )
    model_class = transformers.Qwen2_5_VLForConditionalGeneration
    return save_model(model_class, config, processor, folder, n_special=8)


def save_tiny_internvl(folder: Path) -> Path:
    """InternVL3 (the default model's family): image tiles, pixel-shuffle projector."""
    image = ["<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
    words = [*SPECIAL_WORDS[:4], *image, *WORDS[len(SPECIAL_WORDS) :]]
    names = ("start_image_token", "end_image_token", "context_image_token", "video_token")
    processor = transformers.InternVLProcessor(
        image_processor=transformers.GotOcr2ImageProcessor(
            size={"height": 28, "width": 28}, crop_to_patches=True, max_patches=4
        ),
        tokenizer=word_tokenizer(words, dict(zip(names, image, strict=True))),
        video_processor=transformers.InternVLVideoProcessor(),
        image_seq_length=1,  # (28 / 14)^2 patches, pixel-shuffled by 0.5
        chat_template=CHAT_TEMPLATE.replace("<image>", "<IMG_CONTEXT>"),
    )
    config = transformers.InternVLConfig(
        vision_config={
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "image_size": 28,
            "patch_size": 14,
        },
        text_config={"model_type": "qwen2", **tiny_text_config(len(words))},
        image_token_id=words.index("<IMG_CONTEXT>"),
        image_seq_length=1,
    )
    model_class = transformers.InternVLForConditionalGeneration
    return save_model(model_class, config, processor, folder, n_special=8)


@pytest.mark.parametrize(
    ("save", "architecture"),
    [
        (save_tiny_qwen2_5_vl, "Qwen2_5_VLForConditionalGeneration"),
        (save_tiny_internvl, "InternVLForConditionalGeneration"),
    ],
)
def test_other_vlm_families_run_through_the_same_back_end(save, architecture, tmp_path):
    vlm = load_vlm(str(save(tmp_path / "vlm")), "DEFAULT", torch.device("cpu"))
    assert type(vlm.model).__name__ == architecture
    images = [photo_like(40 + 17 * i, 50 + 9 * i, seed=i) for i in range(4)]  # 4 sizes
    questions = ["Is there a dog?", "two", "Is there a red cat in the image?", "A"]
    batched = vlm.answer(images, questions)
    vlm.prompts_per_batch = 1
    assert vlm.answer(images, questions) == batched
    assert all(answer.split() for answer in batched)


def test_random_weights_come_from_the_config_and_are_seeded(vlms):
    first = load_vlm(str(vlms["random"]), "none", torch.device("cpu"))
    second = load_vlm(str(vlms["random"]), "none", torch.device("cpu"))
    for a, b in zip(first.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert first.generation.suppress_tokens == list(SPECIAL)  # the folder's generation config
    with pytest.raises(ValueError, match="DEFAULT"):
        load_vlm(str(vlms["random"]), "IMAGENET1K_V2", torch.device("cpu"))


def test_missing_vlm_offline_is_a_fast_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("LIC_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match="hf download lic-test/no-such-vlm"):
        load_vlm("lic-test/no-such-vlm", "DEFAULT", torch.device("cpu"))


# ---- end to end through the rate-task harness ----------------------------------------------
def _rows(out: Path, task: str) -> dict[tuple[str, str], float]:
    with (out / "results.csv").open() as f:
        return {
            (row["codec"] + row["quality"] + row["lambda"], row["metric"]): float(row["value"])
            for row in csv.DictReader(f)
            if row["task"] == task
        }


@pytest.fixture(scope="module")
def codec_checkpoint(tmp_path_factory) -> Path:
    return write_codec_checkpoint(tmp_path_factory.mktemp("ckpt") / "hyperprior.ckpt")


@pytest.mark.parametrize(
    ("task", "model", "expected"),
    [
        # always "yes": 4 of 6 labels are yes
        (
            "pope",
            "yes",
            {
                "accuracy": 400 / 6,
                "precision": 400 / 6,
                "recall": 100.0,
                "f1": 80.0,  # 2 (2/3)(1) / (5/3)
                "yes_ratio": 100.0,
                "unparsed": 0.0,
            },
        ),
        # always "B": answers B, A, B
        ("seedbench", "B", {"accuracy": 200 / 3, "unparsed": 0.0}),
    ],
)
def test_scripted_vlm_scores_equal_hand_computation(
    task, model, expected, vlms, codec_checkpoint, tmp_path
):
    maker = make_pope if task == "pope" else make_seedbench
    out = tmp_path / "out"
    run(
        checkpoints=[codec_checkpoint],
        tasks=[task],
        data_roots={task: str(maker(tmp_path / task))},
        out=out,
        baselines=["jpeg"],
        qualities={"jpeg": [40]},
        batch_size=2,
        workers=0,
        device="cpu",
        task_model=str(vlms[model]),
        progress=False,
    )
    rows = _rows(out, task)
    coders = {coder for coder, _ in rows}
    assert len(coders) == 3  # uncompressed, the checkpoint, JPEG q40
    for coder in coders:
        for metric, value in expected.items():
            assert rows[coder, metric] == pytest.approx(value), (coder, metric)
    cells = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    if task == "pope":
        assert {c["metrics"]["random/accuracy"] for c in cells} == {75.0}
        assert {c["metrics"]["adversarial/accuracy"] for c in cells} == {50.0}
    else:
        assert {c["metrics"]["Scene Understanding/accuracy"] for c in cells} == {50.0}
    assert all(c["bpp"] is None or c["bpp"] > 0 for c in cells)


def test_random_vlm_through_the_script(vlms, codec_checkpoint, tmp_path):
    import eval_rate_task

    out = tmp_path / "out"
    pope, seed = make_pope(tmp_path / "pope"), make_seedbench(tmp_path / "seed")
    code = eval_rate_task.main(
        [
            "--ckpt",
            str(codec_checkpoint),
            "--task",
            "pope",
            "seedbench",
            "--data-root",
            f"pope={pope}",
            f"seedbench={seed}",
            "--out",
            str(out),
            "--workers",
            "0",
            "--device",
            "cpu",
            "--task-model",
            str(vlms["random"]),
            "--task-weights",
            "none",
            "--no-progress",
        ]
    )
    assert code == 0
    for name in ("results.csv", "bd.csv", "summary.md", "rate_task_pope.png"):
        assert (out / name).is_file(), name
    for task, parse in (("pope", "yes_no"), ("seedbench", "choice")):
        for answers in (out / "answers").glob(f"{task}__*.jsonl"):
            records = [json.loads(line) for line in answers.read_text().splitlines()]
            assert len(records) == (6 if task == "pope" else 3)
            assert all(r["answer"] for r in records)  # the tiny model always says words
            coder = answers.stem.split("__")[1]
            cell = json.loads((out / "cells" / f"{task}__{coder}.json").read_text())
            right = sum(r["parsed"] == r["truth"] for r in records)
            unparsed = sum(r["parsed"] is None for r in records)
            assert cell["metrics"]["accuracy"] == pytest.approx(100 * right / len(records))
            assert cell["metrics"]["unparsed"] == pytest.approx(100 * unparsed / len(records))
            for r in records:  # what was stored is what the parser says of the answer
                choices = ("one", "two", "red", "a dog")
                again = parse_yes_no(r["answer"]) if parse == "yes_no" else None
                if parse == "choice":
                    again = parse_choice(r["answer"], choices)
                assert r["parsed"] == again
    assert len(list((out / "answers").glob("*.jsonl"))) == 4  # 2 tasks x 2 coders
