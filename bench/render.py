"""Benchmark: stereo frame time of the medverse renderer against pyrender and a bare floor loop.

Twins (real data: nilearn's fsaverage5 pial hemispheres through ``assets.library``):

- ``brain``: the bundled twin, 2 structures, 40,960 triangles;
- ``brain-1m``: the same hemispheres Loop-free midpoint-subdivided to 1,000,000 triangles (2 structures);
- ``spheres-50``: 50 structures of 1,280 triangles each, for the Python CPU time per frame.

Measured in one run, on one EGL context, at ``--width`` x ``--height`` per eye (default 1832x1920) with
4x MSAA, each frame ending in ``glFinish`` and no read-back (except pyrender, which always reads back):

- ``medverse``: :class:`xrcore.render.Renderer` drawing both eyes (its default stereo mode);
- ``floor``: the same vertex and index buffers drawn once per eye with a trivial shader into a 2-layer
  4x MSAA target of the same size, resolved like the renderer resolves: nothing else;
- ``pyrender``: ``pyrender.OffscreenRenderer`` rendering the same meshes once per eye (two
  ``render()`` calls per stereo frame), what a Python user would pick today;
- ``cpu_ms_50_structures``: thread CPU time of ``Renderer.draw`` for the 50-structure twin, the part
  spent inside the draw calls (on llvmpipe the driver's vertex processing runs there, on the calling
  thread, as it does clears, flushes and the MSAA resolve blit) and the rest: the Python side;
- ``sim_1m``: peak resident memory of ``medverse sim`` on the 1M twin (a subprocess reading its own
  ``VmHWM``), at the simulator's default eye size and at ``--width`` x ``--height``.

Reports medians, p99 and the ratios pyrender/medverse and medverse/floor; prints them and writes
``bench/results/render.json``.

Set-up (pyrender is not a medverse dependency; install it without its PyOpenGL 3.1.0 pin, which would
downgrade the PyOpenGL medverse needs)::

    .venv/bin/pip install --no-deps pyrender pyglet freetype-py six
    .venv/bin/python bench/render.py [--frames 10] [--width 1832 --height 1920] [--skip-pyrender]

On a machine with an NVIDIA GPU the same command uses the EGL device platform (no X server); pyrender
then needs ``PYGLET_HEADLESS=1`` (set here) so that pyglet does not look for X11 libraries. Numbers
from a single machine are comparable only within one run: each contender is measured in the same
process, one after the other.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# bench/ holds benchmarks named like packages (bench/assets.py): drop this folder from the import
# path so that ``import assets`` finds the package, not a sibling script
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

from xrcore.gl import prepare_pyopengl  # noqa: E402

prepare_pyopengl()

import trimesh  # noqa: E402
from OpenGL import GL  # noqa: E402

from assets.library import build  # noqa: E402
from assets.twin import Structure, Twin  # noqa: E402
from xrcore.backends.sim import QUEST_LEFT_FOV, eye_views  # noqa: E402
from xrcore.gl.context import GLContext, create_context  # noqa: E402
from xrcore.motion import look_rotation  # noqa: E402
from xrcore.render import Renderer, label_pass, markers, targets, timers, twin_gpu  # noqa: E402
from xrcore.render import renderer as renderer_module  # noqa: E402
from xrcore.scene import Scene, frame_twin  # noqa: E402
from xrcore.types import Pose, View  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "render.json"
SAMPLES = 4
#: The renderer's modules that issue GL calls per frame, each through its own ``GL`` name.
GL_MODULES = (renderer_module, twin_gpu, markers, label_pass, targets, timers)


# --- twins -------------------------------------------------------------------------------------------


def million_twin(target: int = 1_000_000) -> Twin:
    """The brain's hemispheres subdivided (midpoint, 4 triangles per triangle) to ``target`` triangles."""
    brain = build("brain")
    per = target // len(brain.structures)
    structures = []
    for s in brain.structures:
        v, f = s.vertices.astype(np.float64), s.faces.astype(np.int64)
        while len(f) * 4 <= per:
            v, f = trimesh.remesh.subdivide(v, f)
        extra = (per - len(f)) // 3  # subdividing k more faces adds 3k triangles
        if extra > 0:
            v, f = trimesh.remesh.subdivide(v, f, face_index=np.arange(extra))
        structures.append(Structure(s.name, v.astype(np.float32), f.astype(np.int32), color=s.color))
    return Twin("brain-1m", structures, source_units=brain.source_units)


def spheres_twin(count: int = 50) -> Twin:
    """``count`` icospheres (1,280 triangles, 1 cm radius) on a grid 3 cm apart: many small structures."""
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.01)
    side = math.ceil(math.sqrt(count))
    structures = []
    for i in range(count):
        offset = np.array([(i % side) * 0.03, (i // side) * 0.03, 0.0])
        structures.append(Structure(f"sphere {i}", sphere.vertices + offset, sphere.faces))
    return Twin(f"spheres-{count}", structures)


# --- cameras -----------------------------------------------------------------------------------------


def stereo_views(scene: Scene, width: int, height: int) -> list[View]:
    """Both eyes 1.2 twin-diagonals in front of the twin, looking at its centre."""
    centre, size = scene.twin_center_and_size()
    target = (float(centre[0]), float(centre[1]), float(centre[2]))
    eye = (target[0], target[1], target[2] + 1.2 * size)
    head = Pose(eye, look_rotation(eye, target))
    return eye_views(head, 0.063, QUEST_LEFT_FOV, width, height)


def summarise(times_ms: list[float]) -> dict[str, float]:
    a = np.asarray(times_ms)
    return {"median_ms": round(float(np.median(a)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "min_ms": round(float(a.min()), 3), "frames": len(times_ms)}  # fmt: skip


# --- the three contenders ----------------------------------------------------------------------------


def run_medverse(
    ctx: GLContext, renderer: Renderer, scene: Scene, views: list[View], frames: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    ctx.make_current()
    renderer.draw(scene, views)  # upload and warm-up
    renderer.finish()
    cpu_before = len(renderer.stats.cpu_ms)
    times = []
    for _ in range(frames):
        t0 = time.perf_counter()
        renderer.draw(scene, views)
        renderer.finish()
        times.append((time.perf_counter() - t0) * 1000.0)
    cpu = list(renderer.stats.cpu_ms)[cpu_before:]
    gpu = list(renderer.stats.gpu_ms)[-frames:]
    return summarise(times), {"cpu": summarise(cpu), "gpu": summarise(gpu) if gpu else None}


_FLOOR_VS = """#version 330 core
layout(location = 0) in vec3 a_position;
uniform mat4 u_mvp;
void main() { gl_Position = u_mvp * vec4(a_position, 1.0); }
"""
_FLOOR_FS = """#version 330 core
out vec4 o_color;
void main() { o_color = vec4(0.8, 0.7, 0.6, 1.0); }
"""


class Floor:
    """Bare stereo loop: the renderer's own vertex/index buffers, a trivial shader, one draw per eye
    into a 2-layer MSAA texture array, resolved per layer. Nothing else."""

    def __init__(self, renderer: Renderer, width: int, height: int) -> None:
        buffers = renderer.twin_buffers
        assert buffers is not None
        vbo, ibo, ranges = buffers
        self.draws = [r[0] for r in ranges]  # level 0 of each structure
        self.width, self.height = width, height
        self.program = self._program()
        self.vao = int(GL.glGenVertexArrays(1))
        GL.glBindVertexArray(self.vao)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, vbo)
        GL.glEnableVertexAttribArray(0)
        GL.glVertexAttribPointer(0, 3, GL.GL_FLOAT, GL.GL_FALSE, 24, None)
        GL.glBindBuffer(GL.GL_ELEMENT_ARRAY_BUFFER, ibo)
        GL.glBindVertexArray(0)
        self.textures = [int(t) for t in np.atleast_1d(GL.glGenTextures(3))]
        ms = GL.GL_TEXTURE_2D_MULTISAMPLE_ARRAY
        GL.glBindTexture(ms, self.textures[0])
        GL.glTexImage3DMultisample(ms, SAMPLES, GL.GL_SRGB8_ALPHA8, width, height, 2, GL.GL_TRUE)
        GL.glBindTexture(ms, self.textures[1])
        GL.glTexImage3DMultisample(ms, SAMPLES, GL.GL_DEPTH24_STENCIL8, width, height, 2, GL.GL_TRUE)
        GL.glBindTexture(GL.GL_TEXTURE_2D_ARRAY, self.textures[2])
        GL.glTexImage3D(GL.GL_TEXTURE_2D_ARRAY, 0, GL.GL_SRGB8_ALPHA8, width, height, 2, 0, GL.GL_RGBA,
                        GL.GL_UNSIGNED_BYTE, None)  # fmt: skip
        self.fbo = [int(f) for f in np.atleast_1d(GL.glGenFramebuffers(4))]
        for eye in (0, 1):
            GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.fbo[eye])
            GL.glFramebufferTextureLayer(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, self.textures[0], 0, eye)
            GL.glFramebufferTextureLayer(GL.GL_FRAMEBUFFER, GL.GL_DEPTH_STENCIL_ATTACHMENT, self.textures[1], 0, eye)
            GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.fbo[2 + eye])
            GL.glFramebufferTextureLayer(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, self.textures[2], 0, eye)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)

    @staticmethod
    def _program() -> int:
        prog = GL.glCreateProgram()
        for kind, src in ((GL.GL_VERTEX_SHADER, _FLOOR_VS), (GL.GL_FRAGMENT_SHADER, _FLOOR_FS)):
            sh = GL.glCreateShader(kind)
            GL.glShaderSource(sh, src)
            GL.glCompileShader(sh)
            GL.glAttachShader(prog, sh)
        GL.glLinkProgram(prog)
        return int(prog)

    def frame(self, mvps: list[np.ndarray]) -> None:
        GL.glViewport(0, 0, self.width, self.height)
        GL.glEnable(GL.GL_DEPTH_TEST)
        GL.glEnable(GL.GL_CULL_FACE)  # the renderer culls back faces when nothing is clipped: so does the floor
        GL.glEnable(GL.GL_FRAMEBUFFER_SRGB)  # same output: linear shader values stored as sRGB
        GL.glUseProgram(self.program)
        GL.glBindVertexArray(self.vao)
        loc = GL.glGetUniformLocation(self.program, "u_mvp")
        for eye in (0, 1):
            GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.fbo[eye])
            GL.glClear(GL.GL_COLOR_BUFFER_BIT | GL.GL_DEPTH_BUFFER_BIT)
            GL.glUniformMatrix4fv(loc, 1, GL.GL_TRUE, mvps[eye])
            for first, count in self.draws:
                GL.glDrawElements(GL.GL_TRIANGLES, count, GL.GL_UNSIGNED_INT, GL.GLvoidp(4 * first))
        for eye in (0, 1):
            GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self.fbo[eye])
            GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, self.fbo[2 + eye])
            w, h = self.width, self.height
            GL.glBlitFramebuffer(0, 0, w, h, 0, 0, w, h, GL.GL_COLOR_BUFFER_BIT, GL.GL_NEAREST)
        GL.glFinish()

    def close(self) -> None:
        GL.glDeleteFramebuffers(4, self.fbo)
        GL.glDeleteTextures(3, self.textures)
        GL.glDeleteVertexArrays(1, [self.vao])
        GL.glDeleteProgram(self.program)


def run_floor(ctx: GLContext, renderer: Renderer, scene: Scene, views: list[View], frames: int) -> dict[str, Any]:
    ctx.make_current()
    floor = Floor(renderer, views[0].width, views[0].height)
    model = scene.model_matrix()
    mvps = [(v.fov.projection() @ v.view_matrix() @ model).astype(np.float32) for v in views]
    floor.frame(mvps)
    times = []
    for _ in range(frames):
        t0 = time.perf_counter()
        floor.frame(mvps)
        times.append((time.perf_counter() - t0) * 1000.0)
    floor.close()
    return summarise(times)


class _DrawCallTimer:
    """Stands in for the ``GL`` of the renderer's modules: adds up the thread CPU time spent in the calls that
    do rendering work (draws, clears, flushes (fences flush too), the resolve blit: llvmpipe runs
    vertex processing, binning and blits on the calling thread) and forwards everything else.

    Each name is looked up once and kept as an attribute, so that the instrument's own overhead (a
    ``__getattr__`` per GL call and constant) does not land in the Python side it measures."""

    DRAWS = frozenset({"glMultiDrawElementsIndirect", "glDrawElementsInstanced", "glDrawElements",
                       "glBlitFramebuffer", "glClear", "glFlush", "glFenceSync", "glClientWaitSync"})  # fmt: skip

    def __init__(self) -> None:
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        target = getattr(GL, name)
        if name in self.DRAWS:

            def timed(*args: Any, _target: Any = target) -> Any:
                t0 = time.thread_time()
                try:
                    return _target(*args)
                finally:
                    self.seconds += time.thread_time() - t0

            target = timed
        setattr(self, name, target)
        return target


def run_pyrender(scene: Scene, views: list[View], frames: int) -> dict[str, Any]:
    # pyrender imports pyglet's window module; headless, pyglet uses EGL instead of needing X11 libraries
    os.environ.setdefault("PYGLET_HEADLESS", "1")
    import pyrender  # noqa: PLC0415 - optional, benchmark only

    pscene = pyrender.Scene(bg_color=(0.02, 0.02, 0.025, 1.0), ambient_light=(0.1, 0.1, 0.1))
    model = scene.model_matrix()
    for s in scene.twin.structures:
        mesh = trimesh.Trimesh(s.vertices, s.faces, process=False)
        material = pyrender.MetallicRoughnessMaterial(baseColorFactor=s.color)
        pscene.add(pyrender.Mesh.from_trimesh(mesh, material=material, smooth=True), pose=model)
    v0 = views[0]
    width, height = v0.width, v0.height
    cams = []
    for v in views:
        f = v.fov
        fx = width / (math.tan(f.angle_right) - math.tan(f.angle_left))
        fy = height / (math.tan(f.angle_up) - math.tan(f.angle_down))
        cx = -math.tan(f.angle_left) * fx
        cy = math.tan(f.angle_up) * fy
        cam = pyrender.IntrinsicsCamera(fx, fy, cx, cy, znear=0.05, zfar=100.0)
        cams.append(pscene.add(cam, pose=v.pose.matrix()))
    light = pyrender.DirectionalLight(intensity=3.0)
    pscene.add(light, pose=v0.pose.matrix())
    renderer = pyrender.OffscreenRenderer(width, height)
    try:

        def stereo() -> None:
            for cam in cams:
                pscene.main_camera_node = cam
                renderer.render(pscene)

        stereo()
        times = []
        for _ in range(frames):
            t0 = time.perf_counter()
            stereo()
            times.append((time.perf_counter() - t0) * 1000.0)
    finally:
        renderer.delete()
    return summarise(times)


_LAUNCHER = """
import atexit, runpy, sys

def peak():
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmHWM:'):
                print('PEAK_RSS_KB', line.split()[1], flush=True)

atexit.register(peak)
sys.argv = ['medverse', *sys.argv[1:]]
runpy.run_module('sessions', run_name='__main__', alter_sys=True)
"""


def sim_peak_rss(glb: Path, width: int, height: int, frames: int) -> dict[str, Any]:
    """Peak resident memory (MB) of a ``medverse sim`` process rendering the twin in ``glb``.

    The process reads its own high-water mark (``VmHWM`` in ``/proc/self/status``) as it exits: the
    peak of this process only (``ru_maxrss`` of a child would also count its parent's size at fork,
    which Linux carries across exec).
    """
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-c", _LAUNCHER, "sim", "--twin", str(glb), "--frames", str(frames),
               "--width", str(width), "--height", str(height), "--out", str(Path(tmp) / "frames"),
               "--every", str(frames)]  # fmt: skip
        env = dict(os.environ, MEDVERSE_HOME=str(Path(tmp) / "home"), MEDVERSE_CACHE=str(Path(tmp) / "cache"))
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        seconds = time.perf_counter() - t0
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        marker = [ln for ln in lines if ln.startswith("PEAK_RSS_KB")]
        rss_kb = int(marker[-1].split()[1]) if marker else 0
        return {"rc": proc.returncode, "peak_rss_mb": round(rss_kb / 1024, 1), "width": width, "height": height,
                "seconds": round(seconds, 2), "frames": frames,
                "output": [ln for ln in lines if not ln.startswith("PEAK_RSS_KB")][-7:]}  # fmt: skip


def write_glb(twin: Twin, path: Path) -> Path:
    scene = trimesh.Scene()
    for s in twin.structures:
        scene.add_geometry(trimesh.Trimesh(s.vertices, s.faces, process=False), node_name=s.name)
    scene.export(path)
    return path


# --- main --------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=1832)
    ap.add_argument("--height", type=int, default=1920)
    ap.add_argument("--frames", type=int, default=10, help="timed frames per contender on the brain twin")
    ap.add_argument("--frames-1m", type=int, default=5, help="timed frames per contender on the 1M twin")
    ap.add_argument("--pyrender-frames", type=int, default=3)
    ap.add_argument("--skip-pyrender", action="store_true")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    ctx = create_context("egl", width=args.width, height=args.height)
    result: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), **{k: ctx.info.get(k) for k in
                    ("renderer", "version", "platform", "vendor")}},
        "width": args.width, "height": args.height, "samples": SAMPLES, "twins": {},
    }  # fmt: skip
    print(f"{ctx.info['renderer']} ({ctx.info['platform']}), {args.width}x{args.height} per eye, {SAMPLES}x MSAA")
    t0 = time.perf_counter()
    twins = [(build("brain"), args.frames), (million_twin(), args.frames_1m)]
    print(f"twins ready in {time.perf_counter() - t0:.1f} s")
    renderer = Renderer(ctx, width=args.width, height=args.height, samples=SAMPLES, lod=0)
    result["stereo_mode"] = renderer.stereo
    for twin, frames in twins:
        scene = Scene(twin, twin_pose=frame_twin(twin))
        views = stereo_views(scene, args.width, args.height)
        entry: dict[str, Any] = {"triangles": twin.triangle_count, "structures": len(twin.structures)}
        entry["medverse"], inner = run_medverse(ctx, renderer, scene, views, frames)
        entry["medverse_cpu_ms"], entry["medverse_gpu_ms"] = inner["cpu"], inner["gpu"]
        entry["floor"] = run_floor(ctx, renderer, scene, views, frames)
        entry["medverse_over_floor"] = round(entry["medverse"]["median_ms"] / entry["floor"]["median_ms"], 3)
        result["twins"][twin.name] = entry
        print(f"{twin.name}: {twin.triangle_count} triangles; medverse {entry['medverse']['median_ms']:.1f} ms "
              f"(p99 {entry['medverse']['p99_ms']:.1f}), floor {entry['floor']['median_ms']:.1f} ms, "
              f"ratio {entry['medverse_over_floor']:.2f}", flush=True)  # fmt: skip
    # Python-side CPU per frame, 50 structures (one multi-draw call for all opaque structures)
    spheres = spheres_twin(50)
    scene = Scene(spheres, twin_pose=frame_twin(spheres, upright=False))
    views = stereo_views(scene, args.width, args.height)
    timer = _DrawCallTimer()
    n = max(args.frames, 20)
    ctx.make_current()
    renderer.draw(scene, views)  # upload
    renderer.finish()
    for module in GL_MODULES:
        module.GL = timer  # type: ignore[attr-defined]
    draw_ms: list[float] = []
    inside_ms: list[float] = []
    try:
        for _ in range(n):
            # thread CPU time, not wall time: on a loaded 2-core machine the wall clock also counts
            # the time this thread waited for a core
            before, t0 = timer.seconds, time.thread_time()
            renderer.draw(scene, views)  # draw() ends with the resolve, so its blit is inside
            draw_ms.append((time.thread_time() - t0) * 1000.0)
            inside_ms.append((timer.seconds - before) * 1000.0)
            renderer.finish()
    finally:
        for module in GL_MODULES:
            module.GL = GL  # type: ignore[attr-defined]
    python_ms = [d - i for d, i in zip(draw_ms, inside_ms, strict=True)]
    result["cpu_ms_50_structures"] = {
        "draw_cpu": summarise(draw_ms),
        "inside_draw_calls": summarise(inside_ms),
        "python_side": summarise(python_ms),
    }
    draw_calls_ms = float(np.median(inside_ms))
    inner = {"cpu": summarise(draw_ms)}
    print(f"spheres-50: CPU per frame in Renderer.draw median {inner['cpu']['median_ms']:.3f} ms, of which "
          f"{draw_calls_ms:.3f} ms inside the driver's rendering calls; Python side median "
          f"{np.median(python_ms):.3f} ms, p99 {np.percentile(python_ms, 99):.3f} ms")
    result["gl_errors"] = renderer.gl_errors
    renderer.close()
    ctx.close()
    # pyrender last: its renderer terminates the EGL display it shares with ours (one per device)
    for twin, _ in twins:
        if args.skip_pyrender:
            break
        entry = result["twins"][twin.name]
        scene = Scene(twin, twin_pose=frame_twin(twin))
        views = stereo_views(scene, args.width, args.height)
        try:
            entry["pyrender"] = run_pyrender(scene, views, args.pyrender_frames)
            entry["pyrender_over_medverse"] = round(entry["pyrender"]["median_ms"] / entry["medverse"]["median_ms"], 2)
            print(f"{twin.name}: pyrender {entry['pyrender']['median_ms']:.1f} ms (p99 {entry['pyrender']['p99_ms']:.1f}), "
                  f"{entry['pyrender_over_medverse']:.1f}x medverse's time", flush=True)  # fmt: skip
        except ImportError:
            entry["pyrender"] = "not installed (pip install --no-deps pyrender pyglet freetype-py six)"
        except Exception as exc:  # a broken optional reference must not lose the run
            entry["pyrender"] = f"failed: {type(exc).__name__}: {exc}"
            print(f"{twin.name}: pyrender {entry['pyrender']}", flush=True)
    if not args.skip_rss:
        # at the simulator's default eye size, and at the benchmark's; on llvmpipe the 4x MSAA colour
        # and depth arrays live in system memory (about 480 MB at 1832x1920 per eye)
        result["sim_1m"] = []
        with tempfile.TemporaryDirectory() as tmp:
            glb = write_glb(twins[1][0], Path(tmp) / "brain-1m.glb")
            for w, h in ((720, 800), (args.width, args.height)):
                run = sim_peak_rss(glb, w, h, frames=10)
                result["sim_1m"].append(run)
                print(f"medverse sim on the 1M twin at {w}x{h} per eye: peak RSS {run['peak_rss_mb']} MB "
                      f"(rc {run['rc']}, {run['seconds']} s)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
