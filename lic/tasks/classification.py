"""ImageNet classification (top-1/top-5) and label-free consistency on any image folder."""

from __future__ import annotations

import csv
from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import Tensor, nn

from lic.data.images import list_images, load_image
from lic.tasks.base import Accumulator, DatasetLayoutError, PerImageAccumulator, Sample, Task


class ClassifierInput:
    """Resize the short side, centre-crop, normalise: a torchvision weights' transform, split
    so that the codec sees the [0, 1] crop and normalisation happens after decoding."""

    def __init__(self, ref) -> None:
        """`ref`: a torchvision ImageClassification transform, or None for 256/224 ImageNet."""
        self.resize = int(ref.resize_size[0]) if ref is not None else 256
        self.crop = int(ref.crop_size[0]) if ref is not None else 224
        mean = ref.mean if ref is not None else (0.485, 0.456, 0.406)
        std = ref.std if ref is not None else (0.229, 0.224, 0.225)
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    def identity(self) -> dict:
        """The preprocessing, as plain data (part of a cached reference's key)."""
        return {
            "resize": self.resize,
            "crop": self.crop,
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
        }

    def prepare(self, image: Tensor) -> Tensor:
        image = TF.resize(image, [self.resize], antialias=True)
        return TF.center_crop(image, [self.crop])

    def logits(self, model: nn.Module, images: list[Tensor]) -> Tensor:
        x = torch.stack(images)
        x = (x - self.mean.to(x.device)) / self.std.to(x.device)
        return model(x).float()


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """An eval-mode model with each BatchNorm folded into the convolution before it (torch's
    own fx pass), or the model itself when torch.fx cannot trace it."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(model)
    except Exception:  # untraceable models (data-dependent control flow) run as they are
        return model


class ClassifierTask(Task):
    """A task whose model is an image classifier fed the weights' resize/crop/normalise."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.input = ClassifierInput(self.model_ref.transform())

    def build_model(self, device: torch.device) -> nn.Module:
        """On the CPU: batch norms folded into their convolutions (torch.fx) and channels-last
        memory format, oneDNN's layout. ResNet-50 at 224 px on 2 cores, batch 8: 50 -> 41 ms
        per image (channels-last) -> 35 ms (folded); logits equal within float rounding (2e-5
        on values of 30-40). A model torch.fx cannot trace runs unfolded. Other devices keep
        the model as built (not measured here)."""
        model = super().build_model(device)
        if device.type != "cpu":
            return model
        return fold_batch_norms(model).to(memory_format=torch.channels_last)

    def predict(
        self, model: nn.Module, images: list[Tensor], targets: Sequence = ()
    ) -> list[Tensor]:
        return list(self.input.logits(model, images).cpu())

    def reference_identity(self) -> dict:
        layout = {"cpu_layout": "channels_last, batch norms folded"}  # see build_model
        return super().reference_identity() | {"input": self.input.identity()} | layout


class TopKAccumulator(PerImageAccumulator):
    """Top-1 and top-5 (0 or 100 per image) and the softmax probability of the true class."""

    names = ("top1", "top5", "p_true")

    def update(self, predictions, targets, sample_ids) -> None:
        logits = torch.stack(list(predictions))
        labels = torch.as_tensor(list(targets))
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        top1 = 100.0 * (top5[:, 0] == labels)
        p_true = logits.double().softmax(1).gather(1, labels[:, None])[:, 0]
        top5_hit = 100.0 * (top5 == labels[:, None]).any(dim=1)
        self.add(sample_ids, top1=top1, top5=top5_hit, p_true=p_true)


class ImageNetTask(ClassifierTask):
    """ImageNet val: class folders (`n01440764/*.JPEG`, sorted wnids = class indices), or a
    flat folder of images with `LOC_val_solution.csv` + `LOC_synset_mapping.txt` (Kaggle) or
    `val.txt` lines `<file> <0-based class index>`."""

    name = "imagenet"
    default_model = "resnet50"
    default_weights = "IMAGENET1K_V2"
    metrics = ("top1", "top5")
    outcomes = ("top1", "p_true")

    def layout_hint(self) -> str:
        return (
            "expected class folders <wnid>/*.JPEG, or images with LOC_val_solution.csv + "
            "LOC_synset_mapping.txt, or with val.txt '<file> <class index>'"
        )

    def find_samples(self) -> list[Sample]:
        folders = sorted(p for p in self.root.iterdir() if p.is_dir())
        if folders:
            return [
                Sample(path, label)
                for label, folder in enumerate(folders)
                for path in list_images(folder)
            ]
        if (self.root / "LOC_val_solution.csv").is_file():
            return self._kaggle_samples()
        if (self.root / "val.txt").is_file():
            return self._val_txt_samples()
        raise DatasetLayoutError(
            f"{self.root}: no class folders and no label file ({self.layout_hint()})"
        )

    def _kaggle_samples(self) -> list[Sample]:
        mapping = self.root / "LOC_synset_mapping.txt"
        if not mapping.is_file():
            raise DatasetLayoutError(f"{mapping}: missing (lists the 1000 wnids in class order)")
        index = {
            line.split()[0]: i
            for i, line in enumerate(mapping.read_text().splitlines())
            if line.strip()
        }
        files = {p.stem: p for p in list_images(self.root)}
        samples = []
        with (self.root / "LOC_val_solution.csv").open() as f:
            for row in csv.DictReader(f):
                try:
                    wnid = row["PredictionString"].split()[0]
                    samples.append(Sample(files[row["ImageId"]], index[wnid]))
                except (KeyError, IndexError) as err:
                    raise DatasetLayoutError(
                        f"{self.root / 'LOC_val_solution.csv'}: bad row {dict(row)} ({err!r})"
                    ) from None
        return sorted(samples)

    def _val_txt_samples(self) -> list[Sample]:
        samples = []
        for n, line in enumerate((self.root / "val.txt").read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit():
                raise DatasetLayoutError(
                    f"{self.root / 'val.txt'}:{n}: expected '<file> <class index>', got '{line}'"
                )
            samples.append(Sample(self.root / parts[0], int(parts[1])))
        return samples

    def load(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[index]
        return self.input.prepare(load_image(path)), label

    def new_accumulator(self) -> Accumulator:
        return TopKAccumulator()


class AgreementAccumulator(PerImageAccumulator):
    """Top-1 agreement and KL(p_reference || p_decoded) between two sets of logits."""

    names = ("top1_agreement", "kl")

    def update(self, predictions, targets, sample_ids) -> None:
        decoded, reference = torch.stack(list(predictions)), torch.stack(list(targets))
        agree = 100.0 * (decoded.argmax(1) == reference.argmax(1))
        log_p, log_q = F.log_softmax(reference.double(), 1), F.log_softmax(decoded.double(), 1)
        kl = (log_p.exp() * (log_p - log_q)).sum(1)
        self.add(sample_ids, top1_agreement=agree, kl=kl)


class ConsistencyTask(ClassifierTask):
    """Label-free: does the classifier predict on the decoded image what it predicts on the
    original? Any image folder; the original's prediction is the target (computed once per
    image: it is also the uncompressed row)."""

    name = "consistency"
    default_model = "resnet50"
    default_weights = "IMAGENET1K_V2"
    metrics = ("top1_agreement", "kl")
    outcomes = ("top1_agreement", "kl")
    uses_reference = True

    def layout_hint(self) -> str:
        return "expected a folder of images (any layout)"

    def find_samples(self) -> list[Sample]:
        return [Sample(path) for path in list_images(self.root)]

    def load(self, index: int) -> tuple[Tensor, None]:
        return self.input.prepare(load_image(self.samples[index].path)), None

    def new_accumulator(self) -> Accumulator:
        return AgreementAccumulator()
