"""Rendering: :class:`Renderer` (the only code that issues GL calls) and its shaders (``shaders/``)."""

from xrcore.render.renderer import Renderer, RendererConfig, RenderError, vertex_normals

__all__ = ["RenderError", "Renderer", "RendererConfig", "vertex_normals"]
