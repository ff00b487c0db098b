"""Rendering: :class:`Renderer` and the passes it coordinates, and its shaders (``shaders/``).

The rule: only modules in ``xrcore/render/`` issue GL calls, and they take PyOpenGL from
:mod:`xrcore.render.glapi` alone. Outside this package, ``OpenGL`` is imported only by ``xrcore/gl/``
(which prepares PyOpenGL and creates contexts: EGL, GLFW, GLX) and ``xrcore/backends/openxr/`` (the
graphics binding's EGL/GLX handles; it passes swapchain texture names to
:meth:`Renderer.copy_to_texture_array` and draws nothing itself). Tests may call GL to inspect what the
renderer made.

One job per module:

- ``renderer.py``: :class:`Renderer`, the coordinator (stereo mode, frame GL state, pass order, public API);
- ``frame.py``: GL-free frame maths (eye matrices, levels of detail, the twin's placement, draw order,
  marker records, the markers' unit meshes);
- ``targets.py``: framebuffers and textures, MSAA resolve, read-back, present, copy to a swapchain array;
- ``twin_gpu.py``: the twin's shared vertex and index buffers, material table, indirect and batched draws;
- ``markers.py``: the markers pass (instanced spheres and segments);
- ``label_pass.py``: the labels pass (glyph atlas texture, instances, per-label table, draw);
- ``labels.py``: the labels' GL-free declutter layout; ``glyphs.py``: the GL-free glyph atlas;
- ``timers.py``: GPU time from timestamp queries;
- ``programs.py``: shader programs built from ``shaders/`` for the stereo mode;
- ``glapi.py``: the PyOpenGL import, raw entry points, GL error log, the interleaved vertex layout;
- ``png.py``: PNG output of read-back images; ``desktop.py``: the desktop window viewer.
"""

from xrcore.render.renderer import Renderer, RendererConfig, RenderError

__all__ = ["RenderError", "Renderer", "RendererConfig"]
