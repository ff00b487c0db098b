"""Swapchains and the environment blend mode: what the backend renders into and how it is composited.

One 2-layer sRGB colour swapchain (and a depth swapchain where ``XR_KHR_composition_layer_depth`` is
offered), in formats chosen by :func:`choose_format`; each frame the renderer's eyes are copied into
them and submitted as one projection layer, with the environment blend mode chosen by
:func:`choose_blend_mode`.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import xr

from xrcore.backends.base import BackendError
from xrcore.types import BLEND_MODES

if TYPE_CHECKING:
    from xrcore.backends.openxr.backend import OpenXRConfig

logger = logging.getLogger("xrcore.backends.openxr")  # the backend's one logger, named as before the split

# --------------------------------------------------------------------------------------------------
# Swapchain formats
# --------------------------------------------------------------------------------------------------

GL_SRGB8_ALPHA8 = 0x8C43
GL_RGBA8 = 0x8058
GL_RGBA16F = 0x881A
GL_DEPTH_COMPONENT32F = 0x8CAC
GL_DEPTH24_STENCIL8 = 0x88F0
GL_DEPTH_COMPONENT24 = 0x81A6
GL_DEPTH_COMPONENT16 = 0x81A5
#: Colour formats, best first: the renderer writes sRGB-encoded colour, which the compositor must
#: know (an sRGB format), else the image looks washed out.
COLOR_FORMATS: tuple[int, ...] = (GL_SRGB8_ALPHA8, GL_RGBA8)
#: Depth formats, best first: the renderer's own depth buffer is D24S8, and a depth blit into the
#: swapchain image needs the same format on both sides.
DEPTH_FORMATS: tuple[int, ...] = (GL_DEPTH24_STENCIL8, GL_DEPTH_COMPONENT32F, GL_DEPTH_COMPONENT24, GL_DEPTH_COMPONENT16)


def choose_format(offered: Sequence[int], preferred: Sequence[int]) -> int | None:
    """The first of ``preferred`` the runtime offers (``offered`` is in the runtime's order), or None."""
    offered_set = set(int(f) for f in offered)
    for fmt in preferred:
        if fmt in offered_set:
            return fmt
    return None


# --------------------------------------------------------------------------------------------------
# Environment blend modes (OpenXR 1.0, section 10.5 "Environment Blend Mode")
# --------------------------------------------------------------------------------------------------

#: ``XrEnvironmentBlendMode`` of each of medverse's blend-mode names (:data:`xrcore.types.BLEND_MODES`).
BLEND_MODE_VALUES: dict[str, int] = {"opaque": 1, "additive": 2, "alpha": 3}
#: What :attr:`OpenXRConfig.blend` accepts: ``"auto"`` (the runtime's preference) or a mode by name.
BLEND_CHOICES: tuple[str, ...] = ("auto", *BLEND_MODES)


def choose_blend_mode(offered: Sequence[int], wanted: str) -> tuple[str, tuple[str, ...]]:
    """The environment blend mode to submit with, and the modes the runtime offers, by name.

    ``offered`` is what ``xrEnumerateEnvironmentBlendModes`` listed, in the runtime's order of
    preference (values medverse has no name for, from vendor extensions, are passed over);
    ``wanted`` is ``"auto"`` (the first, preferred, mode) or one of :data:`xrcore.types.BLEND_MODES`.

    Raises
    ------
    BackendError
        ``wanted`` is not offered (one line naming the modes that are), or no mode medverse knows is.
    """
    by_value = {v: k for k, v in BLEND_MODE_VALUES.items()}
    names = tuple(dict.fromkeys(by_value[int(m)] for m in offered if int(m) in by_value))
    if not names:
        raise BackendError(f"the OpenXR runtime offers no environment blend mode medverse knows "
                           f"(XrEnvironmentBlendMode values {[int(m) for m in offered]})")
    if wanted == "auto":
        return names[0], names
    if wanted not in names:
        raise BackendError(f"the OpenXR runtime does not offer the {wanted!r} environment blend mode; it offers "
                           f"{', '.join(names)} (set blend to one of those, or 'auto')")
    return wanted, names


@dataclass
class _Swapchain:
    handle: Any
    width: int
    height: int
    format: int
    textures: list[int] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# The backend's part: swapchains made with the session, the layer submitted each frame
# --------------------------------------------------------------------------------------------------


class _SwapchainMixin:
    """:class:`~xrcore.backends.openxr.backend.OpenXRBackend`'s swapchains: made with the session, and
    each frame the renderer's eyes copied into them and the projection layer to submit."""

    # The backend's state these methods use, set in OpenXRBackend.__init__.
    config: OpenXRConfig
    session: Any
    extensions: set[str]
    renderer: Any
    blend_mode: str
    _views_config: list[Any]
    _space: Any
    _color: _Swapchain | None
    _depth: _Swapchain | None

    def _create_swapchains(self) -> None:
        offered = list(xr.enumerate_swapchain_formats(self.session))
        color = choose_format(offered, self.config.color_formats)
        if color is None:
            raise BackendError(f"the runtime offers none of the colour formats {[hex(f) for f in self.config.color_formats]}"
                               f" (it offers {[hex(f) for f in offered]})")
        if color != GL_SRGB8_ALPHA8:
            logger.warning("runtime has no sRGB swapchain; colours will look too bright")
        v = self._views_config[0]
        w, h = int(v.recommended_image_rect_width), int(v.recommended_image_rect_height)
        views = len(self._views_config)
        usage = xr.SwapchainUsageFlags.COLOR_ATTACHMENT_BIT | xr.SwapchainUsageFlags.TRANSFER_DST_BIT
        self._color = self._swapchain(color, w, h, views, usage)
        depth = choose_format(offered, self.config.depth_formats)
        if depth is not None and xr.KHR_COMPOSITION_LAYER_DEPTH_EXTENSION_NAME in self.extensions:
            usage = xr.SwapchainUsageFlags.DEPTH_STENCIL_ATTACHMENT_BIT | xr.SwapchainUsageFlags.TRANSFER_DST_BIT
            self._depth = self._swapchain(depth, w, h, views, usage)

    def _swapchain(self, fmt: int, w: int, h: int, layers: int, usage: Any) -> _Swapchain:
        # One swapchain with a layer per eye: the renderer's own 2-layer array copies into it whole.
        handle = xr.create_swapchain(self.session, xr.SwapchainCreateInfo(
            usage_flags=usage, format=fmt, sample_count=1, width=w, height=h, face_count=1,
            array_size=layers, mip_count=1))
        images = xr.enumerate_swapchain_images(handle, xr.SwapchainImageOpenGLKHR)
        return _Swapchain(handle, w, h, fmt, [int(img.image) for img in images])

    def _render_layers(self, xr_views: list[Any]) -> list[Any]:
        """Copy the renderer's eyes into the swapchain images; the projection layer to submit."""
        color, depth = self._color, self._depth
        assert color is not None
        if self.renderer is None or not hasattr(self.renderer, "copy_to_texture_array"):
            raise BackendError("the OpenXR backend needs a renderer with copy_to_texture_array(); attach one")
        color_index = self._acquire(color)
        depth_texture = depth.textures[self._acquire(depth)] if depth is not None else None
        try:
            wrote_depth = bool(self.renderer.copy_to_texture_array(color.textures[color_index], depth_texture,
                                                                   color.width, color.height))
        finally:  # released even when the copy fails, so the next frame can acquire again
            xr.release_swapchain_image(color.handle, xr.SwapchainImageReleaseInfo())
            if depth is not None:
                xr.release_swapchain_image(depth.handle, xr.SwapchainImageReleaseInfo())
        rect = xr.Rect2Di(offset=xr.Offset2Di(0, 0), extent=xr.Extent2Di(color.width, color.height))
        self._keep: list[Any] = []  # ctypes structures the runtime reads in xrEndFrame
        # The depth layer must state the clip distances the renderer's projection used.
        rc = getattr(self.renderer, "config", None)
        near, far = float(getattr(rc, "near", self.config.near_m)), float(getattr(rc, "far", self.config.far_m))
        projection_views = []
        for eye, v in enumerate(xr_views):
            depth_info = None
            if wrote_depth and depth is not None:
                depth_info = xr.CompositionLayerDepthInfoKHR(
                    sub_image=xr.SwapchainSubImage(swapchain=depth.handle, image_rect=rect, image_array_index=eye),
                    min_depth=0.0, max_depth=1.0, near_z=near, far_z=far)
                self._keep.append(depth_info)
            # Built through the constructor (not a bare ctypes array) so that each view's type is set.
            projection_views.append(xr.CompositionLayerProjectionView(
                pose=v.pose, fov=v.fov, next=depth_info,
                sub_image=xr.SwapchainSubImage(swapchain=color.handle, image_rect=rect, image_array_index=eye)))
        # With alpha blending the compositor must read the image's alpha, which the renderer writes
        # premultiplied (it clears to transparent black), hence no UNPREMULTIPLIED_ALPHA_BIT.
        flags = (xr.CompositionLayerFlags.BLEND_TEXTURE_SOURCE_ALPHA_BIT if self.blend_mode == "alpha"
                 else xr.CompositionLayerFlags.NONE)
        layer = xr.CompositionLayerProjection(layer_flags=flags, space=self._space, views=projection_views)
        self._keep.append(layer)
        return [ctypes.byref(layer)]

    def _acquire(self, chain: _Swapchain) -> int:
        index = xr.acquire_swapchain_image(chain.handle, xr.SwapchainImageAcquireInfo())
        xr.wait_swapchain_image(chain.handle, xr.SwapchainImageWaitInfo(timeout=xr.INFINITE_DURATION))
        return int(index)
