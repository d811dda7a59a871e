"""MLIC++ as published (`mlicpp`): the model, and reading the official checkpoints."""

from lic.codecs.mlicpp.model import GENERATIONS, MLICPlusPlus, official_scale_table
from lic.codecs.registry import register_codec

register_codec("mlicpp")(MLICPlusPlus)

__all__ = ["GENERATIONS", "MLICPlusPlus", "official_scale_table"]
