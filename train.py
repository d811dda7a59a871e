"""Train a codec: `python train.py fit --config configs/demo.yaml` (LightningCLI)."""

from lightning.pytorch.cli import LightningCLI

from lic.training import CodecModule, ImageDataModule


def main() -> None:
    LightningCLI(CodecModule, ImageDataModule, save_config_kwargs={"overwrite": True})


if __name__ == "__main__":
    main()
