"""Rendering: :class:`Renderer` (the only code that issues GL calls) and its shaders (``shaders/``)."""

from xrcore.render.renderer import Renderer, RendererConfig, RenderError

__all__ = ["RenderError", "Renderer", "RendererConfig"]
