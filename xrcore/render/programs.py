"""Shader programs: the files in ``shaders/`` compiled for one stereo mode, with cached uniforms.

Each vertex shader is ``#version``, the stereo mode's extension lines and defines, ``stereo.glsl`` (which
eye a vertex belongs to) and the shader's own file; fragment shaders get the same preamble without the
stereo file. A :class:`Program` remembers its uniform locations and the last value given to each
uniform through :meth:`Program.set`, so that an unchanged uniform costs no GL call per frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

from xrcore.render.glapi import GL, RenderError, raw_uniform1i

#: ``STEREO_MODE`` value of each stereo mode in ``stereo.glsl``.
_MODE_DEFINE = {"two-pass": 0, "layered": 1, "multiview": 2}


@dataclass
class Program:
    """A linked GL program: its handle, uniform locations and last-set uniform values."""

    handle: int
    uniforms: dict[str, int] = field(default_factory=dict)
    #: Bytes of the value last given to each uniform set through :meth:`set` (a program keeps its
    #: uniforms' values, so an unchanged one costs no GL call).
    values: dict[str, bytes] = field(default_factory=dict)

    def loc(self, name: str) -> int:
        """Location of uniform ``name`` (-1 when the linker dropped it), looked up once."""
        if name not in self.uniforms:
            self.uniforms[name] = int(GL.glGetUniformLocation(self.handle, name))
        return self.uniforms[name]

    def set(self, name: str, setter: Callable[..., Any], data: np.ndarray, *lead: Any) -> None:
        """``setter(location, *lead, data)`` (a raw ``glUniform*v`` entry point: no PyOpenGL array
        wrapping) when ``data`` (float32, contiguous) differs from what the uniform holds."""
        key = data.tobytes()
        if self.values.get(name) != key:
            self.values[name] = key
            setter(self.loc(name), *lead, data)

    def set_int(self, name: str, value: int) -> None:
        """``glUniform1i`` (raw) when ``value`` differs from what the uniform holds."""
        key = int(value).to_bytes(4, "little", signed=True)
        if self.values.get(name) != key:
            self.values[name] = key
            raw_uniform1i(self.loc(name), int(value))

    def delete(self) -> None:
        """Delete the GL program (the context must be current)."""
        GL.glDeleteProgram(self.handle)


def shader_source(name: str) -> str:
    """Text of ``shaders/<name>`` from the installed package."""
    return (resources.files("xrcore.render") / "shaders" / name).read_text(encoding="utf-8")


class ProgramBuilder:
    """Builds the renderer's programs for one stereo mode on one context.

    Parameters
    ----------
    stereo
        ``"multiview"``, ``"layered"`` or ``"two-pass"`` (see :mod:`xrcore.render.renderer`).
    gl_version
        (major, minor) of the context: GLSL 4.10 from GL 4.1 on, 3.30 before.
    extensions
        The context's extension names (for the layered mode's ``gl_Layer`` extension).
    """

    def __init__(self, stereo: str, gl_version: tuple[int, int], extensions: set[str]) -> None:
        self.stereo = stereo
        self.gl_version = gl_version
        self.extensions = extensions

    def build(self, vert: str, frag: str, defines: dict[str, int] | None = None) -> Program:
        """Compile and link ``shaders/<vert>`` and ``shaders/<frag>`` with ``defines``; raises
        :class:`~xrcore.render.glapi.RenderError` with the GL log when either fails."""
        vs_source = self._preamble("vert", defines) + shader_source("stereo.glsl") + shader_source(vert)
        vs = self._compile("vert", vs_source, vert)
        fs = self._compile("frag", self._preamble("frag", defines) + shader_source(frag), frag)
        prog = GL.glCreateProgram()
        GL.glAttachShader(prog, vs)
        GL.glAttachShader(prog, fs)
        GL.glLinkProgram(prog)
        GL.glDeleteShader(vs)
        GL.glDeleteShader(fs)
        if not GL.glGetProgramiv(prog, GL.GL_LINK_STATUS):
            log = GL.glGetProgramInfoLog(prog)
            log = log.decode(errors="replace") if isinstance(log, bytes) else str(log)
            raise RenderError(f"program {vert}+{frag} failed to link: {log.strip()}")
        return Program(int(prog))

    def _preamble(self, stage: str, defines: dict[str, int] | None) -> str:
        version = "410 core" if self.gl_version >= (4, 1) else "330 core"
        lines = [f"#version {version}"]
        if stage == "vert" and self.stereo == "layered":
            name = (
                "GL_ARB_shader_viewport_layer_array"
                if "GL_ARB_shader_viewport_layer_array" in self.extensions
                else "GL_AMD_vertex_shader_layer"
            )
            lines.append(f"#extension {name} : require")
        if stage == "vert" and self.stereo == "multiview":
            lines += ["#extension GL_OVR_multiview2 : require", "layout(num_views = 2) in;"]
        lines.append(f"#define STEREO_MODE {_MODE_DEFINE[self.stereo]}")
        lines += [f"#define {k} {v}" for k, v in (defines or {}).items()]
        return "\n".join(lines) + "\n"

    def _compile(self, stage: str, source: str, name: str) -> int:
        kind = GL.GL_VERTEX_SHADER if stage == "vert" else GL.GL_FRAGMENT_SHADER
        shader = GL.glCreateShader(kind)
        GL.glShaderSource(shader, source)
        GL.glCompileShader(shader)
        if not GL.glGetShaderiv(shader, GL.GL_COMPILE_STATUS):
            log = GL.glGetShaderInfoLog(shader)
            log = log.decode(errors="replace") if isinstance(log, bytes) else str(log)
            GL.glDeleteShader(shader)
            raise RenderError(f"shader {name} failed to compile ({self.stereo} stereo): {log.strip()}")
        return int(shader)
