"""Learned samplers: modules that place a few samples per ray (``render.estimators`` march a grid instead)."""

from .projection import ProjectionSampler, RefineNet, SamplerNet, SourceViews

__all__ = ["ProjectionSampler", "RefineNet", "SamplerNet", "SourceViews"]
