"""A Hugging Face vision-language model behind one call: images and prompts in, answers out.

Any `transformers` image-text-to-text model with a chat-template processor works (InternVL3
`-hf` ports, Qwen2.5-VL, LLaVA, ...), by hub name or local directory. Decoding is greedy, so
a run is repeatable; prompts are generated in left-padded batches; on a GPU the model runs
in bf16. Needs the optional extra: `pip install 'lic[vlm]'`.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from lic.weights import WeightsUnavailableError, is_reachable, random_weights

DEFAULT_VLM = "OpenGVLab/InternVL3-1B-hf"
PRETRAINED = ("DEFAULT", "pretrained")


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ImportError(
            "VLM tasks need Hugging Face transformers: pip install 'lic[vlm]'"
        ) from None
    return transformers


def require_model_files(name: str) -> None:
    """Fail in seconds, with instructions, when `name` is neither a local directory, nor in
    the Hugging Face cache, nor downloadable from here."""
    if Path(name).is_dir():
        return
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str) or is_reachable(
        constants.ENDPOINT
    ):
        return
    raise WeightsUnavailableError(
        f"the VLM '{name}' is neither in the Hugging Face cache ({constants.HF_HUB_CACHE}) "
        f"nor downloadable from here.\n"
        f"  On a machine with network access run `hf download {name}` and copy the cache "
        f"(or set HF_HOME to it),\n"
        f"  or save the model and its processor to a folder and pass that folder as "
        f"--task-model."
    )


class VisionLanguageModel(nn.Module):
    """A VLM and its processor; `answer` runs batched greedy generation.

    Args:
        model: a transformers image-text-to-text model.
        processor: its processor (image processor, tokenizer, chat template).
        max_new_tokens: answer length cap; yes/no and letter answers need a few tokens.
        prompts_per_batch: prompts per `generate` call (images x questions can be many).
    """

    def __init__(
        self, model: nn.Module, processor, max_new_tokens: int = 16, prompts_per_batch: int = 16
    ) -> None:
        super().__init__()
        self.model, self.processor = model, processor
        self.prompts_per_batch = prompts_per_batch
        if getattr(processor, "chat_template", None) is None:
            raise ValueError(
                "the VLM's processor has no chat template; use an instruction-tuned model"
            )
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # generation appends on the right
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.generation = copy.deepcopy(model.generation_config)
        self.generation.update(
            do_sample=False,
            num_beams=1,
            temperature=None,
            top_p=None,
            top_k=None,
            max_new_tokens=max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
        )

    def prompt(self, question: str) -> str:
        """The model's chat template around one image and one question."""
        message = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
        ]
        return self.processor.apply_chat_template(message, add_generation_prompt=True)

    @torch.inference_mode()
    def answer(self, images: Sequence[Tensor], questions: Sequence[str]) -> list[str]:
        """One answer per (image, question); images (3, H, W) in [0, 1] on any device, sent
        to the processor as the 8-bit images a decoder would write."""
        answers = []
        device, dtype = self.model.device, self.model.dtype
        for start in range(0, len(questions), self.prompts_per_batch):
            chunk = range(start, min(start + self.prompts_per_batch, len(questions)))
            pixels = [images[i].clamp(0, 1).mul(255).round().to(torch.uint8).cpu() for i in chunk]
            inputs = self.processor(
                images=pixels,
                text=[self.prompt(questions[i]) for i in chunk],
                padding=True,
                return_tensors="pt",
            ).to(device, dtype=dtype)
            output = self.model.generate(**inputs, generation_config=self.generation)
            new_tokens = output[:, inputs["input_ids"].shape[1] :]
            answers += [
                text.strip()
                for text in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            ]
        return answers

    @torch.inference_mode()
    def option_loglikelihoods(
        self, image: Tensor, question: str, options: Sequence[str]
    ) -> list[float]:
        """Mean log-likelihood per token of each option's text as the answer to `question`
        about `image` (SEED-Bench's likelihood protocol: the official script takes the mean
        token cross-entropy of each choice and picks the lowest). The options are scored
        in one right-padded batch: the prompt's tokens, then the option's."""
        pixels = image.clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
        prompt = self.prompt(question)
        texts = [prompt] + [f"{prompt}{option}" for option in options]
        side, self.tokenizer.padding_side = self.tokenizer.padding_side, "right"
        try:
            inputs = self.processor(
                images=[pixels] * len(texts), text=texts, padding=True, return_tensors="pt"
            ).to(self.model.device, dtype=self.model.dtype)
        finally:
            self.tokenizer.padding_side = side
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        start = int(mask[0].sum())
        if not bool((ids[1:, :start] == ids[0, :start]).all()):
            raise ValueError("the tokenizer splits the prompt differently before an option")
        rows = {k: v[1:] for k, v in inputs.items()}
        logits = self.model(**rows).logits.float()
        log_probs = torch.log_softmax(logits[:, start - 1 : -1], dim=-1)
        targets = rows["input_ids"][:, start:]
        token = log_probs.gather(-1, targets[..., None])[..., 0]
        keep = rows["attention_mask"][:, start:].to(token.dtype)
        if bool((keep.sum(1) == 0).any()):
            raise ValueError("an option has no tokens of its own")
        return ((token * keep).sum(1) / keep.sum(1)).tolist()


def load_vlm(name: str, weights: str, device: torch.device, **options) -> VisionLanguageModel:
    """`name`: hub id or local folder; `weights`: DEFAULT (pretrained) or none (random
    weights from the model's config, seeded: tests and smoke runs)."""
    transformers = _transformers()
    if weights not in PRETRAINED and not random_weights(weights):
        raise ValueError(f"VLM weights must be DEFAULT (pretrained) or none, not '{weights}'")
    require_model_files(name)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    auto = transformers.AutoModelForImageTextToText
    try:
        processor = transformers.AutoProcessor.from_pretrained(name)
        if random_weights(weights):
            config = transformers.AutoConfig.from_pretrained(name)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = auto.from_config(config)
            with contextlib.suppress(OSError):  # the released stop tokens, if the folder has them
                model.generation_config = transformers.GenerationConfig.from_pretrained(name)
        else:
            model = auto.from_pretrained(name, dtype=dtype)
    except OSError as err:
        raise WeightsUnavailableError(f"cannot load the VLM '{name}': {err}") from err
    return VisionLanguageModel(model.to(device=device, dtype=dtype).eval(), processor, **options)
