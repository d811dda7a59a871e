"""Vision-language tasks: POPE (object hallucination, yes/no) and SEED-Bench (image multiple
choice), asked of a VLM about decoded images.

One sample is one image with all of its questions, so each image is coded once and the bpp
average weighs images, not questions. The VLM sees the whole decoded image and resizes it by
its own policy. Answers are parsed strictly (`lic.tasks.answers`): an answer that commits to
nothing is *unparsed*, counts as wrong, and is reported as its own rate. Every answer is kept
(`records()`, written next to the cell), so a run can be audited question by question.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from lic.data.images import load_image
from lic.errors import UsageError
from lic.tasks.answers import LETTERS, parse_choice, parse_yes_no
from lic.tasks.base import Accumulator, DatasetLayoutError, Sample, TableAccumulator, Task
from lic.tasks.vlm import DEFAULT_VLM, VisionLanguageModel


@dataclass(frozen=True)
class Question:
    """One question about an image; `group` is the POPE split or the SEED-Bench dimension."""

    question_id: str
    text: str
    truth: str
    group: str
    choices: tuple[str, ...] = ()


def _percent(count: np.ndarray, total: np.ndarray) -> np.ndarray:
    """100 count / total, 0 where total is 0 (vectorised over resamples)."""
    count, total = np.asarray(count, dtype=float), np.asarray(total, dtype=float)
    return np.divide(
        100.0 * count, total, out=np.zeros(np.broadcast(count, total).shape), where=total > 0
    )


Tally = dict[tuple, np.ndarray]  # (group or "", truth, parsed) -> totals


class AnswerAccumulator(TableAccumulator):
    """Keeps one record per question (image, id, group, truth, raw answer, parsed answer);
    the scores are functions of how often each (truth, parsed) pair occurs, so a resample
    of images adds up the drawn images' tallies."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def parse(self, question: Question, answer: str) -> str | None:
        raise NotImplementedError

    def update(self, predictions, targets, sample_ids) -> None:
        """`predictions`: per image, the answers; `targets`: per image, its Questions."""
        for answers, questions, image in zip(predictions, targets, sample_ids, strict=True):
            for answer, question in zip(answers, questions, strict=True):
                extra = answer if isinstance(answer, dict) else {"answer": answer}
                self.rows.append(
                    {
                        "image": image,
                        "question_id": question.question_id,
                        "group": question.group,
                        "truth": question.truth,
                        **extra,
                        "parsed": self.parse(question, extra["answer"]),
                    }
                )

    def state(self) -> dict:
        return {"rows": self.rows}

    def merge(self, state: dict) -> None:
        self.rows.extend(state["rows"])

    def records(self) -> list[dict]:
        return self.rows

    def image_ids(self) -> list[str]:
        return list(dict.fromkeys(r["image"] for r in self.rows))

    def groups(self) -> list[str]:
        """The groups scored on their own: all of them when there are several."""
        groups = sorted({r["group"] for r in self.rows})
        return groups if len(groups) > 1 else []

    def image_table(self) -> Tally:
        column = {image: i for i, image in enumerate(self.image_ids())}
        scored = set(self.groups())
        table: Tally = defaultdict(lambda: np.zeros(len(column)))
        for r in self.rows:
            for group in ("", r["group"]) if r["group"] in scored else ("",):
                table[group, r["truth"], r["parsed"]][column[r["image"]]] += 1
        return dict(table)

    def per_image(self) -> dict[str, np.ndarray]:
        """Questions, right answers and unparsed answers of each image, and its share of
        right answers in percent (`image_accuracy`; the task's scores are ratios over all
        questions, not means over images)."""
        column = {image: i for i, image in enumerate(self.image_ids())}
        out = {name: np.zeros(len(column)) for name in ("questions", "correct", "unparsed")}
        for r in self.rows:
            i = column[r["image"]]
            out["questions"][i] += 1
            out["correct"][i] += r["parsed"] == r["truth"]
            out["unparsed"][i] += r["parsed"] is None
        out["image_accuracy"] = _percent(out["correct"], out["questions"])
        return out

    def scores(self, tally: Tally, group: str, size: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def from_totals(self, totals: Tally) -> dict[str, np.ndarray]:
        """Scores over all questions, then per group (`<group>/<metric>`) if several."""
        size = len(next(iter(totals.values()))) if totals else 1
        result = self.scores(totals, "", size)
        for group in self.groups():
            result.update({f"{group}/{k}": v for k, v in self.scores(totals, group, size).items()})
        return result


def _count(tally: Tally, group: str, size: int, truth=None, parsed=...) -> np.ndarray:
    """Total of the (truth, parsed) pairs of `group`; None for truth means any truth, ... for
    parsed any parse."""
    total = np.zeros(size)
    for (g, t, p), value in tally.items():
        if g == group and truth in (None, t) and parsed in (..., p):
            total = total + value
    return total


class YesNoAccumulator(AnswerAccumulator):
    """POPE's accuracy, precision, recall, F1 and yes-ratio (percent), "yes" the positive
    class. Unparsed answers are neither yes nor no: wrong for accuracy, a miss for recall."""

    def parse(self, question: Question, answer: str) -> str | None:
        return parse_yes_no(answer)

    def scores(self, tally: Tally, group: str, size: int) -> dict[str, np.ndarray]:
        def count(truth=None, parsed=...):
            return _count(tally, group, size, truth, parsed)

        n = count()
        tp, fp, tn = count("yes", "yes"), count("no", "yes"), count("no", "no")
        precision, recall = _percent(tp, tp + fp), _percent(tp, count("yes"))
        both = precision + recall
        f1 = np.divide(2 * precision * recall, both, out=np.zeros(size), where=both > 0)
        return {
            "accuracy": _percent(tp + tn, n),
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "yes_ratio": _percent(tp + fp, n),
            "unparsed": _percent(count(parsed=None), n),
        }


class ChoiceAccumulator(AnswerAccumulator):
    """Multiple-choice accuracy (percent); unparsed answers count as wrong."""

    def parse(self, question: Question, answer: str) -> str | None:
        return parse_choice(answer, question.choices)

    def scores(self, tally: Tally, group: str, size: int) -> dict[str, np.ndarray]:
        right = sum((v for (g, t, p), v in tally.items() if g == group and t == p), np.zeros(size))
        n = _count(tally, group, size)
        return {
            "accuracy": _percent(right, n),
            "unparsed": _percent(_count(tally, group, size, parsed=None), n),
        }


class VLMTask(Task):
    """A question-answering task over images, answered by a transformers VLM.

    `model`: hub id or local folder of an image-text-to-text model with a chat template
    (default InternVL3-1B); `weights`: DEFAULT (pretrained) or none (random, from its config).
    """

    default_model = DEFAULT_VLM
    default_weights = "DEFAULT"
    model_family = "transformers"
    outcomes = ("image_accuracy",)
    samples: list[Sample]  # (image path, its questions)

    def load(self, index: int) -> tuple[Tensor, list[Question]]:
        path, questions = self.samples[index]
        return load_image(path), questions

    def prompt(self, question: Question) -> str:
        raise NotImplementedError

    def predict(
        self, model: VisionLanguageModel, images: list[Tensor], targets: Sequence[Any]
    ) -> list[list[str]]:
        asked = [(i, q) for i, questions in enumerate(targets) for q in questions]
        answers = model.answer([images[i] for i, _ in asked], [self.prompt(q) for _, q in asked])
        per_image: list[list[str]] = [[] for _ in images]
        for (i, _), answer in zip(asked, answers, strict=True):
            per_image[i].append(answer)
        return per_image

    def description(self) -> dict:
        n_questions = sum(len(questions) for _, questions in self.samples)
        return {**super().description(), "n_questions": n_questions}

    @staticmethod
    def group_by_image(pairs: list[tuple[Path, Question]]) -> list[Sample]:
        by_image: dict[Path, list[Question]] = defaultdict(list)
        for path, question in pairs:
            by_image[path].append(question)
        missing = sorted(str(p) for p in by_image if not p.is_file())
        if missing:
            raise DatasetLayoutError(
                f"{len(missing)} image(s) named by the questions are missing, e.g. "
                f"{', '.join(missing[:3])}"
            )
        return [Sample(path, questions) for path, questions in sorted(by_image.items())]


class POPETask(VLMTask):
    """POPE: `<root>/coco_pope_{random,popular,adversarial}.json` (JSON lines with `image`,
    `text`, `label`, `question_id`; any subset of the splits) and the COCO val2014 images in
    `<root>/val2014/` (or `<root>/images/`, or `<root>` itself). Each split is also scored
    on its own (`random/f1`, ...)."""

    name = "pope"
    metrics = ("accuracy", "precision", "recall", "f1", "yes_ratio", "unparsed")
    instruction = "Answer the question using a single word or phrase."

    def layout_hint(self) -> str:
        return (
            "expected coco_pope_<split>.json question files (JSON lines: image, text, label) "
            "and their images in val2014/, images/ or next to them"
        )

    def question_files(self) -> list[Path]:
        return sorted(
            p
            for p in self.root.iterdir()
            if p.is_file() and "pope" in p.name.lower() and p.suffix in (".json", ".jsonl")
        )

    @staticmethod
    def read_lines(path: Path) -> list[tuple[int, dict]]:
        text = path.read_text()
        try:
            if text.lstrip().startswith("["):  # a JSON list instead of JSON lines
                return list(enumerate(json.loads(text), 1))
            return [(n, json.loads(line)) for n, line in enumerate(text.splitlines(), 1) if line]
        except json.JSONDecodeError as err:
            raise DatasetLayoutError(f"{path}: not JSON lines ({err})") from None

    def find_samples(self) -> list[Sample]:
        files = self.question_files()
        if not files:
            raise DatasetLayoutError(f"{self.root}: no POPE question files ({self.layout_hint()})")
        rows = []
        for path in files:
            split = path.stem.split("pope_")[-1]
            for n, row in self.read_lines(path):
                label = str(row.get("label", "")).strip().lower() if isinstance(row, dict) else ""
                if label not in ("yes", "no") or not row.get("image") or not row.get("text"):
                    raise DatasetLayoutError(
                        f"{path}:{n}: expected an object with image, text and label yes/no, "
                        f"got {str(row)[:120]}"
                    )
                question_id = str(row.get("question_id", f"{split}-{n}"))
                rows.append((row["image"], Question(question_id, row["text"], label, split)))
        folder = self.image_folder(rows[0][0])
        return self.group_by_image([(folder / image, question) for image, question in rows])

    def image_folder(self, first_image: str) -> Path:
        for folder in (self.root / "val2014", self.root / "images", self.root):
            if (folder / first_image).is_file():
                return folder
        raise DatasetLayoutError(
            f"{self.root}: image {first_image} is not in val2014/, images/ or the root "
            f"({self.layout_hint()})"
        )

    def prompt(self, question: Question) -> str:
        return f"{question.text} {self.instruction}"

    def new_accumulator(self) -> Accumulator:
        return YesNoAccumulator()


class SEEDBenchTask(VLMTask):
    """SEED-Bench (v1), image questions only: `<root>/SEED-Bench.json` (`questions` with
    `question`, `choice_a`..`choice_d`, `answer`, `data_id`, `data_type`, `question_type_id`)
    and `<root>/SEED-Bench-image/<data_id>`. Each dimension is also scored on its own.

    `protocol`: "generate" asks for the option's letter and parses the answer; "likelihood"
    is SEED-Bench's own protocol: the question alone is asked and the answer is the option
    whose text has the highest mean log-likelihood per token under the VLM (recorded with
    every option's value in the answers file; nothing is left unparsed)."""

    name = "seedbench"
    metrics = ("accuracy", "unparsed")
    protocols = ("generate", "likelihood")
    instruction = "Answer with the option's letter from the given choices directly."
    choice_keys = ("choice_a", "choice_b", "choice_c", "choice_d")

    def layout_hint(self) -> str:
        return "expected SEED-Bench.json and SEED-Bench-image/ (SEED-Bench v1 release)"

    def find_samples(self) -> list[Sample]:
        annotations, folder = self.root / "SEED-Bench.json", self.root / "SEED-Bench-image"
        if not annotations.is_file() or not folder.is_dir():
            raise DatasetLayoutError(f"{self.root}: {self.layout_hint()}")
        try:
            data = json.loads(annotations.read_text())
            questions = data["questions"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise DatasetLayoutError(
                f"{annotations}: not the SEED-Bench v1 annotation file ({err!r})"
            ) from None
        type_names = {v: k for k, v in data.get("question_type", {}).items()}
        pairs = []
        for row in questions:
            if not isinstance(row, dict) or row.get("data_type", "image") != "image":
                continue
            try:
                choices = tuple(str(row[key]) for key in self.choice_keys)
                truth = str(row["answer"]).strip().upper()
                type_id = row["question_type_id"]
                question = Question(
                    str(row["question_id"]),
                    str(row["question"]),
                    truth,
                    type_names.get(type_id, str(type_id)),
                    choices,
                )
                path = folder / str(row["data_id"])
            except KeyError as err:
                raise DatasetLayoutError(
                    f"{annotations}: question {str(row)[:120]} lacks {err}"
                ) from None
            if truth not in LETTERS[: len(choices)]:
                raise DatasetLayoutError(
                    f"{annotations}: question {question.question_id} has answer '{truth}'"
                )
            if not path.suffix and not path.is_file():
                path = path.with_suffix(".jpg")
            pairs.append((path, question))
        if not pairs:
            raise DatasetLayoutError(
                f"{annotations}: no image questions (data_type 'image'); SEED-Bench-2 and "
                f"video-only files are not supported"
            )
        return self.group_by_image(pairs)

    def __init__(self, *args, protocol: str = "generate", **kwargs) -> None:
        if protocol not in self.protocols:
            raise UsageError(f"--seed-protocol {protocol}: choose one of {self.protocols}")
        super().__init__(*args, **kwargs)
        self.protocol = protocol

    def predict(
        self, model: VisionLanguageModel, images: list[Tensor], targets: Sequence[Any]
    ) -> list[list[Any]]:
        if self.protocol == "generate":
            return super().predict(model, images, targets)
        answers = []
        for image, questions in zip(images, targets, strict=True):
            answers.append([])
            for question in questions:
                scores = model.option_loglikelihoods(image, question.text, question.choices)
                best = max(range(len(scores)), key=scores.__getitem__)
                answers[-1].append(
                    {
                        "answer": f"{LETTERS[best]}. {question.choices[best]}",
                        "loglikelihoods": dict(zip(LETTERS, scores, strict=False)),
                    }
                )
        return answers

    def description(self) -> dict:
        return {**super().description(), "protocol": self.protocol}

    def prompt(self, question: Question) -> str:
        options = "\n".join(
            f"{letter}. {choice}" for letter, choice in zip(LETTERS, question.choices, strict=False)
        )
        return f"{question.text}\n{options}\n{self.instruction}"

    def new_accumulator(self) -> Accumulator:
        return ChoiceAccumulator()


__all__ = [
    "ChoiceAccumulator",
    "POPETask",
    "Question",
    "SEEDBenchTask",
    "VLMTask",
    "YesNoAccumulator",
]
