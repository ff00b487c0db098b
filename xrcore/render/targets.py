"""Render targets: the stereo framebuffers a frame is drawn into, and every way out of them.

Both eyes render into one 2-layer (multisampled) colour + depth texture array, the layout of an OpenXR
array swapchain, resolved into a single-sampled 2-layer colour array (sRGB or linear). From there an
image is read back (one eye, or both side by side in bands of rows), blitted to a window, or copied
into another array texture (a swapchain image), depth included when the formats allow.

Colour is premultiplied by alpha (see :func:`xrcore.render.frame.clear_color` and the renderer's blend
functions), in linear light: an sRGB target stores the sRGB encoding of premultiplied linear values,
which is what a sampler of an sRGB swapchain image hands an OpenXR compositor.
"""

from __future__ import annotations

import ctypes

import numpy as np

from xrcore.render.glapi import (
    GL,
    GLErrorLog,
    RenderError,
    glFramebufferTextureMultiviewOVR,
    raw_read_pixels,
    raw_tex_image_3d,
)

#: Rows swapped at a time when flipping a read-back image in place.
_FLIP_BLOCK_ROWS = 64
_CLEAR_BITS = GL.GL_COLOR_BUFFER_BIT | GL.GL_DEPTH_BUFFER_BIT | GL.GL_STENCIL_BUFFER_BIT


class RenderTargets:
    """The colour, depth and resolved textures of a stereo frame and their framebuffers.

    Parameters
    ----------
    width, height
        Pixels per eye.
    samples
        MSAA samples (1: no multisampled texture, the frame draws into the resolved one).
    srgb
        Store colour sRGB-encoded (shaders write linear light).
    stereo
        ``"multiview"`` attaches both layers as views; other modes attach the layered texture.
    errors
        Where GL errors found during a swapchain copy are counted.

    Raises :class:`~xrcore.render.glapi.RenderError` when a per-eye framebuffer (or, outside
    multiview, the stereo one) is incomplete; an incomplete multiview framebuffer is reported by
    :attr:`stereo_complete` instead, so that the caller can fall back to another stereo mode.
    """

    def __init__(self, width: int, height: int, samples: int, srgb: bool, stereo: str, errors: GLErrorLog) -> None:
        self.width, self.height, self.samples, self.srgb = width, height, samples, srgb
        self._errors = errors
        w, h, s = width, height, samples
        color_format = GL.GL_SRGB8_ALPHA8 if srgb else GL.GL_RGBA8
        # resolved (single-sample) colour: what is read back or handed to a swapchain
        self.resolved = int(GL.glGenTextures(1))
        GL.glBindTexture(GL.GL_TEXTURE_2D_ARRAY, self.resolved)
        # raw entry point: the wrapped one cannot take a NULL pixel pointer for every format
        raw_tex_image_3d(GL.GL_TEXTURE_2D_ARRAY, 0, color_format, w, h, 2, 0, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE, None)
        for p in (GL.GL_TEXTURE_MIN_FILTER, GL.GL_TEXTURE_MAG_FILTER):
            GL.glTexParameteri(GL.GL_TEXTURE_2D_ARRAY, p, GL.GL_LINEAR)
        if s > 1:
            target = GL.GL_TEXTURE_2D_MULTISAMPLE_ARRAY
            self._color = int(GL.glGenTextures(1))
            GL.glBindTexture(target, self._color)
            GL.glTexImage3DMultisample(target, s, color_format, w, h, 2, GL.GL_TRUE)
        else:
            target = GL.GL_TEXTURE_2D_ARRAY
            self._color = self.resolved
        self._depth = int(GL.glGenTextures(1))
        GL.glBindTexture(target, self._depth)
        if s > 1:
            GL.glTexImage3DMultisample(target, s, GL.GL_DEPTH24_STENCIL8, w, h, 2, GL.GL_TRUE)
        else:
            raw_tex_image_3d(target, 0, GL.GL_DEPTH24_STENCIL8, w, h, 2, 0, GL.GL_DEPTH_STENCIL,
                             GL.GL_UNSIGNED_INT_24_8, None)  # fmt: skip
        # one framebuffer with all layers (one-pass stereo) and one per eye (two passes, resolve)
        self._fbo_stereo = int(GL.glGenFramebuffers(1))
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self._fbo_stereo)
        if stereo == "multiview":
            glFramebufferTextureMultiviewOVR(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, self._color, 0, 0, 2)
            glFramebufferTextureMultiviewOVR(GL.GL_FRAMEBUFFER, GL.GL_DEPTH_STENCIL_ATTACHMENT, self._depth, 0, 0, 2)
            GL.glGetError()  # an unsupported attachment shows up as incompleteness, checked by the caller
        else:
            GL.glFramebufferTexture(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, self._color, 0)
            GL.glFramebufferTexture(GL.GL_FRAMEBUFFER, GL.GL_DEPTH_STENCIL_ATTACHMENT, self._depth, 0)
        # the resolved layers as one framebuffer, colour only: what is drawn after the resolve (labels)
        self._fbo_resolved_stereo = self._fbo_stereo
        if s > 1:
            self._fbo_resolved_stereo = int(GL.glGenFramebuffers(1))
            GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self._fbo_resolved_stereo)
            if stereo == "multiview":
                glFramebufferTextureMultiviewOVR(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, self.resolved, 0, 0, 2)
                GL.glGetError()
            else:
                GL.glFramebufferTexture(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, self.resolved, 0)
        self._fbo_eye = [int(f) for f in np.atleast_1d(GL.glGenFramebuffers(2))]
        self._fbo_resolved = [int(f) for f in np.atleast_1d(GL.glGenFramebuffers(2))]
        for eye in (0, 1):
            GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self._fbo_eye[eye])
            GL.glFramebufferTextureLayer(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, self._color, 0, eye)
            GL.glFramebufferTextureLayer(GL.GL_FRAMEBUFFER, GL.GL_DEPTH_STENCIL_ATTACHMENT, self._depth, 0, eye)
            self._require_complete(self._fbo_eye[eye], f"eye {eye}")
            GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self._fbo_resolved[eye])
            GL.glFramebufferTextureLayer(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, self.resolved, 0, eye)
            self._require_complete(self._fbo_resolved[eye], f"resolved eye {eye}")
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
        if stereo != "multiview":
            self._require_complete(self._fbo_stereo, "stereo")

    @property
    def stereo_complete(self) -> bool:
        """Whether the all-layers framebuffer is complete (a driver may refuse multiview attachments)."""
        return self._framebuffer_ok(self._fbo_stereo)

    def _framebuffer_ok(self, fbo: int) -> bool:
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, fbo)
        status = GL.glCheckFramebufferStatus(GL.GL_FRAMEBUFFER)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
        return bool(status == GL.GL_FRAMEBUFFER_COMPLETE)

    def _require_complete(self, fbo: int, what: str) -> None:
        if not self._framebuffer_ok(fbo):
            raise RenderError(f"{what} framebuffer incomplete ({self.samples}x MSAA, {self.width}x{self.height})")

    # --- drawing ------------------------------------------------------------------------------------

    def bind_and_clear(self, eye: int | None) -> None:
        """Bind the framebuffer of ``eye`` (None: both layers, for one-pass stereo) and clear its colour
        (to the current clear colour), depth and stencil."""
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self._fbo_stereo if eye is None else self._fbo_eye[eye])
        GL.glClear(_CLEAR_BITS)

    def bind_resolved(self, eye: int | None) -> None:
        """Bind the resolved (single-sampled) colour of ``eye`` (None: both layers) to draw over it after
        :meth:`resolve`: there is no depth buffer there (without MSAA it is the frame's own target)."""
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self._fbo_resolved_stereo if eye is None else self._fbo_resolved[eye])

    def resolve(self) -> None:
        """Resolve the multisampled layers into the single-sampled array (nothing to do without MSAA).

        A blit averages each pixel's samples; averages of premultiplied colours stay premultiplied."""
        if self.samples <= 1:
            return
        w, h = self.width, self.height
        for eye in (0, 1):
            GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._fbo_eye[eye])
            GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, self._fbo_resolved[eye])
            GL.glBlitFramebuffer(0, 0, w, h, 0, 0, w, h, GL.GL_COLOR_BUFFER_BIT, GL.GL_NEAREST)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)

    # --- output -------------------------------------------------------------------------------------

    def read_pixels(self, eye: int) -> np.ndarray:
        """(H, W, 4) uint8 RGBA of ``eye`` (0 left, 1 right) as stored, top row first."""
        if eye not in (0, 1):
            raise ValueError(f"eye must be 0 or 1, got {eye!r}")
        w, h = self.width, self.height
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._fbo_resolved[eye])
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
        data = GL.glReadPixels(0, 0, w, h, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE)
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, 0)
        pixels = np.frombuffer(data, dtype=np.uint8).reshape(h, w, 4)
        return np.ascontiguousarray(pixels[::-1])

    def read_stereo(self, top: int, rows: int | None) -> np.ndarray:
        """(rows, 2W, 4) uint8 RGBA of both eyes side by side, rows ``top`` to ``top + rows`` from the
        top (all by default, clamped to the image), top row first.

        Read straight into the one array it returns and flipped in place: no per-eye copies (at
        1832x1920 per eye the image is 28 MB; a band of rows is what a streaming PNG writer needs).
        """
        w, h = self.width, self.height
        top = max(0, min(top, h))
        n = h - top if rows is None else max(0, min(rows, h - top))
        out = np.empty((n, 2 * w, 4), dtype=np.uint8)
        if n == 0:
            return out
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
        GL.glPixelStorei(GL.GL_PACK_ROW_LENGTH, 2 * w)
        try:
            for eye in (0, 1):
                GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._fbo_resolved[eye])
                # GL's row y counts from the bottom: the band's lowest row is h - top - n
                raw_read_pixels(0, h - top - n, w, n, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE,
                                ctypes.c_void_p(out.ctypes.data + 4 * w * eye))  # fmt: skip
        finally:
            GL.glPixelStorei(GL.GL_PACK_ROW_LENGTH, 0)
            GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, 0)
        # bottom to top as read: swap the rows in blocks, through a small scratch buffer
        block = _FLIP_BLOCK_ROWS
        for first in range(0, n // 2, block):
            end = min(first + block, n // 2)
            scratch = out[first:end].copy()
            out[first:end] = out[n - end : n - first][::-1]
            out[n - end : n - first] = scratch[::-1]
        return out

    def present(self, width: int, height: int, eye: int) -> None:
        """Blit ``eye``'s image, scaled to ``width`` x ``height`` pixels, into the default framebuffer."""
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._fbo_resolved[eye])
        GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, 0)
        GL.glBlitFramebuffer(0, 0, self.width, self.height, 0, 0, width, height,
                             GL.GL_COLOR_BUFFER_BIT, GL.GL_LINEAR)  # fmt: skip
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)

    def copy_to_texture_array(self, color: int, depth: int | None, width: int, height: int) -> bool:
        """Copy both eyes into layers 0 and 1 of another context-shared 2D array texture ``color`` of
        ``width`` x ``height`` pixels, and their depth into ``depth`` when given, the sizes match and
        the formats allow a blit. Returns True when depth was written (no GL error is left behind)."""
        w, h = self.width, self.height
        scratch = int(GL.glGenFramebuffers(1))
        wrote_depth = False
        try:
            if self.srgb:
                GL.glEnable(GL.GL_FRAMEBUFFER_SRGB)
            GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, scratch)
            for eye in (0, 1):
                GL.glFramebufferTextureLayer(GL.GL_DRAW_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, color, 0, eye)
                GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._fbo_resolved[eye])
                GL.glBlitFramebuffer(0, 0, w, h, 0, 0, width, height, GL.GL_COLOR_BUFFER_BIT,
                                     GL.GL_LINEAR if (w, h) != (width, height) else GL.GL_NEAREST)  # fmt: skip
            self._errors.check("swapchain colour copy")
            if depth is not None and (w, h) == (width, height):
                GL.glFramebufferTextureLayer(GL.GL_DRAW_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, 0, 0, 0)
                ok = True
                for eye in (0, 1):
                    GL.glFramebufferTextureLayer(GL.GL_DRAW_FRAMEBUFFER, GL.GL_DEPTH_ATTACHMENT, depth, 0, eye)
                    GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._fbo_eye[eye])
                    GL.glBlitFramebuffer(0, 0, w, h, 0, 0, w, h, GL.GL_DEPTH_BUFFER_BIT, GL.GL_NEAREST)
                    # a depth blit needs matching formats; a mismatch is an expected refusal, not a fault
                    ok = ok and GL.glGetError() == GL.GL_NO_ERROR
                wrote_depth = ok
        finally:
            GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
            GL.glDeleteFramebuffers(1, [scratch])
        return wrote_depth

    def delete(self) -> None:
        """Delete the framebuffers and textures (the context must be current)."""
        fbos = {self._fbo_stereo, self._fbo_resolved_stereo, *self._fbo_eye, *self._fbo_resolved}
        GL.glDeleteFramebuffers(len(fbos), list(fbos))
        textures = {self._color, self._depth, self.resolved}
        GL.glDeleteTextures(len(textures), list(textures))
