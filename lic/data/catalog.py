"""What each evaluation data set is, where to get it, and how lic expects it on disk.

Plain data (no torch), read by `lic data` and its checks. Kodak is the one set lic fetches
itself: its records carry a hash of every image's decoded RGB pixels, since mirrors
re-encode the PNGs (different bytes, same pixels).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DataSource:
    """One data set: the task(s) that read it, its layout under `--data-root`, and its source."""

    name: str
    tasks: tuple[str, ...]
    layout: str
    download: str
    full_size: int | None = None
    """Samples in the official release (images; POPE and SEED-Bench: images with questions)."""
    note: str = ""
    files: dict[str, str] = field(default_factory=dict)
    """File name -> sha256 of `pixel_digest_input` (sets lic fetches itself)."""
    base_url: str = ""


KODAK_PIXEL_SHA256 = {
    "kodim01.png": "f8c3ad4acf481639a041df910b5921d7e8875e59e968dd0374b124258e9f6030",
    "kodim02.png": "4446d449a52d9e4eca579df39d0b1f892b0a98b2c6f3b0415d00bd22292a18a8",
    "kodim03.png": "6cd0bebf1e693359edfb678ff659d080f6e65d6c355697e69d80ce86e365f228",
    "kodim04.png": "a927bdcea1ed07d68e5859b7b353fe3f9381c0481e83433417d3dfe05858d627",
    "kodim05.png": "014cd8036a1cf61cdbe48a6da7c7496ea0c663f647d113495b5609b3b01fd54c",
    "kodim06.png": "86a9959dde7499c2e4339033a1906c199afd3c156b24fb9241e52591e97814b6",
    "kodim07.png": "807f5a604fb5d2fcbe54d82ce679da3b1a44cae5bc1651f4904fce1f8c7f27f1",
    "kodim08.png": "47a7810cc2a58feaf7b20e0217a20a065f0ae62081f05816eb2c293cfffe2c3e",
    "kodim09.png": "4c87f66b4c66ec7f02c48e076eefe14032cfdfcf62f8931e2f2752cb0cb7b5f7",
    "kodim10.png": "66629d49518f199d27e12248e371e6ef1195fad1d7826e9f91473e707de45330",
    "kodim11.png": "cd3a5b98faba955f9b94be550611ea543213bc7040fa7564deef976fef2efd86",
    "kodim12.png": "a0709d0a15d9b000ef8ac8bb1cc54d195b9c08f64910cb3cd37554782f03c23d",
    "kodim13.png": "a1dcc1cc9cc4be07c3deec37343dc251790af184b71694e1a23fef54a5b16a8e",
    "kodim14.png": "ab93630ac7a316adffdbfb44f75f2d28518a6d7b9fbb767c3819fa183c0e9013",
    "kodim15.png": "92a39115f0d2dfd5c877967999bd7a15cd44cb0d90f887b88686c783024786c9",
    "kodim16.png": "50515ae1767d69f82c1155492c57d38e83fe089a533055a6369512a81584e1a9",
    "kodim17.png": "c620d8c0a75b470877889c2e72a1ac463534477df67503ca8990ace9e9a1ee35",
    "kodim18.png": "c7057050942f8674059f59ebbaf19b10fde33283478f249ef53b187d3f7e6346",
    "kodim19.png": "2cc43116b52f0ba4449074685ac303272418e71be96870ca1f746da6abcfa70d",
    "kodim20.png": "63fafb7e8c2871b428ead43cc697aaa0c153e903f562e4e5f99911274d850977",
    "kodim21.png": "77e2d5820adde2903d7630b2a1ef304187969a438aadf02602762fe4d2ce0529",
    "kodim22.png": "27835ed0dfcf1fe0d94b02b32ac8c36c296ae889f9b03b99b72e6d908ceff96b",
    "kodim23.png": "b5b053a90be9b98e9d7961d6094315db6df5b5c55e0005012b79af7b315b15b5",
    "kodim24.png": "27ecdc1b691ba1c06312d155b7a2c96dce2e68aafe770987baaff6bc9a88ab82",
}

SOURCES: dict[str, DataSource] = {
    source.name: source
    for source in (
        DataSource(
            "kodak",
            ("fidelity", "consistency"),
            "kodim01.png ... kodim24.png in one folder",
            "https://r0k.us/graphics/kodak/",
            24,
            "fetched and verified by `lic data fetch kodak`",
            KODAK_PIXEL_SHA256,
            "https://r0k.us/graphics/kodak/kodak/",
        ),
        DataSource(
            "imagenet",
            ("imagenet",),
            "ILSVRC2012 val: <wnid>/*.JPEG class folders, or the flat images with val.txt "
            "('<file> <class index>'), or with Kaggle's LOC_val_solution.csv + "
            "LOC_synset_mapping.txt",
            "https://image-net.org/download-images.php (account needed), or "
            "https://www.kaggle.com/c/imagenet-object-localization-challenge",
            50000,
        ),
        DataSource(
            "voc",
            ("voc",),
            "VOC2012/{JPEGImages/*.jpg, SegmentationClass/*.png, ImageSets/Segmentation/val.txt}",
            "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ (VOCtrainval_11-May-2012.tar)",
            1449,
        ),
        DataSource(
            "coco",
            ("coco",),
            "val2017/*.jpg and annotations/instances_val2017.json",
            "https://cocodataset.org/#download (val2017.zip, annotations_trainval2017.zip)",
            5000,
        ),
        DataSource(
            "pope",
            ("pope",),
            "coco_pope_{random,popular,adversarial}.json (JSON lines: question_id, image, text, "
            "label; any subset) and the COCO val2014 images in val2014/ (or images/, or beside)",
            "https://github.com/RUCAIBox/POPE (output/coco/) and "
            "https://cocodataset.org/#download (val2014.zip)",
            None,
            "3 splits x 3,000 questions, 500 images each",
        ),
        DataSource(
            "seedbench",
            ("seedbench",),
            "SEED-Bench.json and SEED-Bench-image/ (SEED-Bench v1; image questions only)",
            "https://huggingface.co/datasets/AILab-CVC/SEED-Bench",
            None,
            "14,233 image questions (dimensions 1-9)",
        ),
    )
}


def task_names() -> list[str]:
    """Every task some data set feeds (the harness's task names)."""
    return sorted({task for source in SOURCES.values() for task in source.tasks})
