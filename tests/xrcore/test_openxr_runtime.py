"""The OpenXR backend end to end against a headless OpenXR runtime, through the real Khronos loader.

``test_openxr_runtime.c`` is a minimal OpenXR 1.0 runtime (a simulated headset, in the spirit of
Monado's simulated HMD): compiled here, found by pyopenxr's loader through ``XR_RUNTIME_JSON``, it
drives the session lifecycle, backs the swapchains with real GL texture arrays made through the
application's EGL context, reads back what was submitted, and logs what it saw. Each run is a fresh
process: the loader reads ``XR_RUNTIME_JSON`` itself, and the EGL context stays out of other tests.

A runtime without ``XR_MNDX_egl_enable`` (``no_egl=1``) takes the Xlib/GLX binding instead, as SteamVR
does; those runs get an X server of their own (Xvfb, from ``conftest.py``) and a GLX context.

The renderer's side of ``submit`` (``copy_to_texture_array``) is played by a few GL calls in the
child process that fill the left eye's layer red and the right eye's green; the runtime reports the
first pixel of each submitted layer.

On request (``hands=1``) the runtime tracks bare hands through ``XR_EXT_hand_tracking`` with a scripted
pinch, with or without controllers (``controllers=0``), and offers a chosen list of environment blend
modes (``blend=alpha/opaque``); each ``end_frame`` log line names the blend mode and layer flags submitted.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PERIOD_NS = 11_111_111
RED, GREEN = "ff0000ff", "00ff00ff"

DRIVER = textwrap.dedent("""
    import json, logging, os, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    from xrcore.backends import create
    import xrcore.backends.openxr  # chooses PyOpenGL's EGL platform before OpenGL.GL is loaded
    from OpenGL import GL
    import numpy as np

    class EyeColours:
        def copy_to_texture_array(self, color, depth, width, height):
            for layer, rgba in ((0, (255, 0, 0, 255)), (1, (0, 255, 0, 255))):
                GL.glClearTexSubImage(color, 0, 0, 0, layer, width, height, 1, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE,
                                      np.array(rgba, np.uint8))
            return False

    def hand(h):
        # Where a hand is and what the skeleton says, for the hand-tracking tests.
        return {"aim": list(h.aim.position) if h.aim else None, "aim_forward": list(h.aim.forward()) if h.aim else None,
                "grip": list(h.grip.position) if h.grip else None,
                "joints": [list(p.position) for p in h.joints.poses] if h.joints else None,
                "radii": list(h.joints.radii) if h.joints else None}

    exit_at = int(os.environ.get("DRIVER_EXIT_AT", "-1"))
    options = {"blend": os.environ["DRIVER_BLEND"]} if os.environ.get("DRIVER_BLEND") else {}
    backend = create(os.environ.get("DRIVER_BACKEND", "auto"), retry_interval_s=0.01, retry_timeout_s=20.0, **options)
    result = {"backend": type(backend).__name__, "frames": []}
    if os.environ.get("DRIVER_REAL_RENDERER"):
        # The real renderer drawing the brain twin through the session loop into the headset.
        from assets.library import build
        from sessions.headset import run_headset
        from sessions.run import SessionConfig

        centre = tuple(json.loads(os.environ.get("DRIVER_CENTRE") or "[0.0, 1.6, -0.45]"))
        done = run_headset(backend, build("brain"), centre=centre, config=SessionConfig(hud=False))
        session = done.session
        result["background"] = list(session.scene.background)
        result["gl_errors"] = done.gl_errors
        result["intents"] = [i.record() for i in session.workspace.applied]
        result["blend"] = [backend.info.blend_mode, list(backend.info.blend_modes)]
        result["hovered"] = sorted(session.scene.hovered)
        print(json.dumps(result))
        sys.exit(0)
    if result["backend"] == "OpenXRBackend":
        if not os.environ.get("DRIVER_NO_RENDERER"):
            backend.attach(EyeColours())
        try:
            backend.start()
        except Exception as exc:
            result["start_error"] = [type(exc).__name__, str(exc)]
            print(json.dumps(result))
            sys.exit(0)
        info = backend.info
        result["info"] = [info.name, info.view_count, info.width, info.height, round(info.rate_hz, 3)]
        result["blend"] = [info.blend_mode, list(info.blend_modes)]
        for frame in backend.frames():
            right, left = frame.inputs.right, frame.inputs.left
            result["frames"].append({
                "index": frame.index, "time": frame.predicted_display_time, "period": frame.period,
                "views": [[list(v.pose.position), v.width, v.height, v.eye, v.fov.angle_left] for v in frame.views],
                "head": list(frame.head.position), "events": list(frame.events),
                "right": [right.trigger, right.squeeze, list(right.thumbstick), sorted(right.buttons),
                          list(right.aim.position) if right.aim else None, list(right.grip.position) if right.grip else None],
                "left": [left.trigger, sorted(left.buttons), list(left.aim.position) if left.aim else None],
                "hands": [hand(left), hand(right)], "focused": backend.machine.input_focused,
            })
            if frame.index == 3:
                backend.haptic_pulse(1, amplitude=0.5, duration_s=0.1)
            if frame.index == exit_at:
                backend.request_exit()
            try:
                backend.submit(frame)
            except Exception as exc:
                result["error"] = [type(exc).__name__, str(exc)]
                break
        result["unexpected"] = backend.machine.unexpected
        backend.stop()
        if os.environ.get("DRIVER_TWICE"):  # the same backend object, started again after its session exited
            backend.start()
            result["second_run_frames"] = 0
            for frame in backend.frames():
                backend.submit(frame)
                result["second_run_frames"] += 1
            backend.stop()
    print(json.dumps(result))
""")


@dataclass
class Run:
    """One driver run: the backend's frames as the application saw them, the runtime's log, stderr."""

    result: dict
    log: list[str]
    stderr: str

    def lines(self, prefix: str) -> list[str]:
        return [line for line in self.log if line.startswith(prefix)]

    def states(self) -> list[int]:
        return [int(line.split()[1]) for line in self.lines("state ")]

    def rendered(self) -> list[str]:
        return [line for line in self.lines("end_frame ") if "layers=1" in line]


@pytest.fixture(scope="module")
def drive(runtime_manifest: Path, tmp_path_factory: pytest.TempPathFactory):
    """Run the driver in a fresh process against the test runtime with the given options."""
    counter = iter(range(1000))

    def run(options: str = "", exit_at: int = -1, backend: str = "auto", renderer: bool = True,
            real_renderer: bool = False, twice: bool = False, display: str | None = None, blend: str = "",
            centre: tuple[float, float, float] | None = None) -> Run:
        log = tmp_path_factory.getbasetemp() / f"xr-runtime-{next(counter)}.log"
        env = {**os.environ, "XR_RUNTIME_JSON": str(runtime_manifest), "MEDVERSE_XR_TEST": options,
               "MEDVERSE_XR_TEST_LOG": str(log), "DRIVER_EXIT_AT": str(exit_at), "DRIVER_BACKEND": backend,
               "DRIVER_NO_RENDERER": "" if renderer else "1", "DRIVER_REAL_RENDERER": "1" if real_renderer else "",
               "DRIVER_TWICE": "1" if twice else "", "DRIVER_BLEND": blend,
               "DRIVER_CENTRE": json.dumps(centre) if centre else ""}
        env.pop("DISPLAY", None)  # an X display only where a test gives one (it enables the Xlib binding)
        env.pop("WAYLAND_DISPLAY", None)
        if display:
            env["DISPLAY"] = display
        out = subprocess.run([sys.executable, "-c", DRIVER], check=False, capture_output=True, text=True, timeout=120,
                             env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        lines = log.read_text().splitlines() if log.exists() else []
        return Run(json.loads(out.stdout.strip().splitlines()[-1]), lines, out.stderr)

    return run


@pytest.fixture(scope="module")
def full_run(drive) -> Run:
    """A session the runtime ends by itself after 4 focused frames (the user took the headset off)."""
    return drive("stop_after=4")


IDLE, READY, SYNCHRONIZED, VISIBLE, FOCUSED, STOPPING, LOSS_PENDING, EXITING = 1, 2, 3, 4, 5, 6, 7, 8


def test_auto_chooses_openxr_when_a_runtime_with_a_headset_answers(full_run: Run) -> None:
    """With a runtime present, auto gives the OpenXR backend, and nothing is logged about a fallback."""
    assert full_run.result["backend"] == "OpenXRBackend"
    assert "falling back" not in full_run.stderr.lower()
    assert full_run.result["info"] == ["openxr", 2, 64, 48, 90.0]


def test_session_walks_the_lifecycle_and_the_backend_follows(full_run: Run) -> None:
    """IDLE..FOCUSED, then the runtime's stop: one xrBeginSession, one xrEndSession, then teardown."""
    assert full_run.states() == [IDLE, READY, SYNCHRONIZED, VISIBLE, FOCUSED, VISIBLE, SYNCHRONIZED, STOPPING, IDLE, EXITING]
    assert len(full_run.lines("begin_session")) == 1 and len(full_run.lines("end_session")) == 1
    assert full_run.log[-3:] == ["destroy_session", "destroy_action_set", "destroy_instance"]
    assert full_run.result["unexpected"] == 0
    events = [e for f in full_run.result["frames"] for e in f["events"]]
    assert events[:5] == ["session:idle", "session:ready", "session:synchronized", "session:visible", "session:focused"]


def test_each_rendered_frame_submits_both_eyes_from_the_swapchain_layers(full_run: Run) -> None:
    """One projection layer per frame: left eye in layer 0 (red), right in layer 1 (green), full 64x48 rect."""
    rendered = full_run.rendered()
    assert len(rendered) == len(full_run.result["frames"]) >= 5
    for line in rendered:
        assert f"view0=layer0:64x48:{RED}/{RED}/0.000:fov-0.90" in line
        assert f"view1=layer1:64x48:{GREEN}/{GREEN}/0.000:fov-0.80" in line
    # Frames the runtime said not to render (SYNCHRONIZED) are ended with no layers, not skipped.
    assert any("layers=0" in line for line in full_run.lines("end_frame "))


def test_swapchains_are_srgb_colour_and_depth_texture_arrays(full_run: Run) -> None:
    """sRGB colour is picked although plain RGBA8 is offered first, and D24S8 depth (the renderer's depth
    format) although 32F is offered first; two layers, no MSAA."""
    assert full_run.lines("swapchain ") == ["swapchain format=0x8c43 size=64x48 layers=2 samples=1",
                                           "swapchain format=0x88f0 size=64x48 layers=2 samples=1"]
    assert "create_session binding=egl gl=ok context=-" in full_run.log
    assert "reference_space 3" in full_run.log  # STAGE, offered by this runtime


def test_frames_carry_predicted_display_time_views_and_head(full_run: Run) -> None:
    """Display times advance by the runtime's 90 Hz period; two eye views 64 mm apart at head height."""
    frames = full_run.result["frames"]
    times = [f["time"] for f in frames]
    assert all(abs((b - a) - PERIOD_NS * 1e-9) < 1e-9 for a, b in itertools.pairwise(times))
    assert [f["index"] for f in frames] == list(range(len(frames)))
    for f in frames:
        assert f["period"] == pytest.approx(1 / 90, rel=1e-6)
        (left, lw, lh, le, lfov), (right, rw, rh, re, rfov) = f["views"]
        assert (lw, lh, le, rw, rh, re) == (64, 48, 0, 64, 48, 1)
        assert right[0] - left[0] == pytest.approx(0.064, abs=1e-6) and left[1] == pytest.approx(1.6)
        assert (lfov, rfov) == pytest.approx((-0.9, -0.8))
        assert f["head"] == pytest.approx([0.0, 1.6, 0.0])
    # The runtime's times match what the backend reported, in nanoseconds.
    submitted = [int(line.split("time=")[1].split()[0]) for line in full_run.rendered()]
    assert submitted == [round(t * 1e9) for t in times]


def test_controller_input_is_read_only_while_focused(full_run: Run) -> None:
    """Focused frames carry the Touch controller's state (right: trigger 0.75, A pressed); others read idle."""
    focused = False
    seen_focused = 0
    for f in full_run.result["frames"]:
        if "session:focused" in f["events"]:
            focused = True
        if "session:visible" in f["events"] and focused and "session:focused" not in f["events"]:
            focused = False
        trigger, squeeze, stick, buttons, aim, grip = f["right"]
        if focused:
            seen_focused += 1
            assert (trigger, squeeze, buttons) == (0.75, 0.25, ["a"])
            assert stick == pytest.approx([0.5, -0.25])
            assert aim == pytest.approx([0.2, 1.3, -0.35]) and grip == pytest.approx([0.2, 1.3, -0.3])
            assert f["left"][0] == 0.0 and f["left"][1] == [] and f["left"][2] == pytest.approx([-0.2, 1.3, -0.35])
        else:
            assert (trigger, buttons, aim) == (0.0, [], None)
    assert seen_focused >= 4


def test_all_four_controller_profiles_are_suggested(full_run: Run) -> None:
    """The runtime receives suggested bindings for the simple, Touch, Index and Vive controllers."""
    profiles = {line.split()[1] for line in full_run.lines("bindings ")}
    assert profiles == {"/interaction_profiles/khr/simple_controller", "/interaction_profiles/oculus/touch_controller",
                        "/interaction_profiles/valve/index_controller", "/interaction_profiles/htc/vive_controller"}


def test_haptic_pulse_reaches_the_right_controller(full_run: Run) -> None:
    """haptic_pulse(1, 0.5, 0.1 s) becomes xrApplyHapticFeedback on the right hand, 100 ms, runtime's frequency."""
    assert full_run.lines("haptic ") == ["haptic action=haptic hand=right amplitude=0.50 duration=100000000 frequency=0.0"]


def test_user_exit_request_stops_the_session_through_the_runtime(drive) -> None:
    """request_exit() while focused: xrRequestExitSession, the runtime walks to STOPPING, xrEndSession, EXITING."""
    run = drive(exit_at=4)
    assert len(run.result["frames"]) >= 5
    assert run.lines("request_exit") == ["request_exit"]
    states = run.states()
    assert states[-5:] == [VISIBLE, SYNCHRONIZED, STOPPING, IDLE, EXITING]
    assert run.log.index("request_exit") < run.log.index("end_session") < run.log.index("destroy_session")
    assert run.result["unexpected"] == 0


@pytest.mark.parametrize("silent", [False, True], ids=["loss-pending-event", "session-lost-error"])
def test_lost_session_is_destroyed_and_recreated_when_the_system_returns(drive, silent: bool) -> None:
    """A lost session (LOSS_PENDING, or only XR_ERROR_SESSION_LOST) is torn down; after two failed xrGetSystem
    polls a new session is made, begun and rendered to, until the runtime ends it."""
    run = drive(f"lose_after=3,unavailable_polls=2,stop_after=3{',silent_loss=1' if silent else ''}")
    assert len(run.lines("create_session")) == 2 and len(run.lines("begin_session")) == 2
    assert len(run.lines("get_system unavailable")) == 2
    assert (LOSS_PENDING in run.states()) is not silent
    first_destroy = run.log.index("destroy_session")
    second_create = [i for i, line in enumerate(run.log) if line.startswith("create_session")][1]
    assert first_destroy < second_create
    after = [line for line in run.log[second_create:] if line.startswith("end_frame ") and "layers=1" in line]
    assert len(after) >= 3 and all(RED in line and GREEN in line for line in after)
    assert run.log[-1] == "destroy_instance"
    assert "lost" in run.stderr and "Traceback" not in run.stderr


def test_runtime_without_the_egl_binding_and_no_display_is_refused_and_auto_falls_back(drive) -> None:
    """A runtime lacking XR_MNDX_egl_enable on a machine without an X display (so no GLX either): openxr
    says so in one line; auto uses the simulator."""
    run = drive("no_egl=1")
    assert run.result["backend"] == "SimBackend"
    warnings = [line for line in run.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "simulator" in warnings[0]
    assert "XR_MNDX_egl_enable" in warnings[0] and "DISPLAY is not set" in warnings[0]
    assert run.lines("create_instance") == []  # refused before an instance was made


@pytest.fixture(scope="module")
def x_display(start_xvfb: Callable[..., Any]) -> str:
    """The DISPLAY of an X server of this module's own (the drivers connect to it, this process does not)."""
    return start_xvfb().display


@pytest.fixture(scope="module")
def xlib_run(drive, x_display: str) -> Run:
    """The runtime offers no XR_MNDX_egl_enable but an X display is there: the Xlib/GLX binding."""
    return drive("no_egl=1,stop_after=4", display=x_display)


def test_without_egl_the_session_runs_over_the_xlib_glx_binding(xlib_run: Run) -> None:
    """XrGraphicsBindingOpenGLXlibKHR with every handle set and the GLX context current; XR_MNDX_egl_enable
    not asked for; the full lifecycle to FOCUSED and out again, then a clean teardown."""
    assert xlib_run.result["backend"] == "OpenXRBackend", xlib_run.stderr[-2000:]
    assert "create_session binding=xlib gl=ok context=current" in xlib_run.log
    # (auto probes with an instance of its own first, so each extension is enabled twice)
    assert set(xlib_run.lines("extension ")) == {"extension XR_KHR_opengl_enable",
                                                 "extension XR_KHR_composition_layer_depth"}
    assert xlib_run.states() == [IDLE, READY, SYNCHRONIZED, VISIBLE, FOCUSED, VISIBLE, SYNCHRONIZED, STOPPING, IDLE,
                                 EXITING]
    assert xlib_run.result["unexpected"] == 0
    assert xlib_run.log[-3:] == ["destroy_session", "destroy_action_set", "destroy_instance"]
    assert "OpenGL over Xlib/GLX" in xlib_run.stderr


def test_over_glx_frames_render_into_the_runtime_swapchain(xlib_run: Run) -> None:
    """GL calls made under the GLX context fill the swapchain images the runtime made with it: the runtime
    reads back red in the left eye's layer and green in the right's, over the whole 64x48 image."""
    rendered = xlib_run.rendered()
    assert len(rendered) == len(xlib_run.result["frames"]) >= 5
    for line in rendered:
        assert f"view0=layer0:64x48:{RED}/{RED}/0.000:fov-0.90" in line
        assert f"view1=layer1:64x48:{GREEN}/{GREEN}/0.000:fov-0.80" in line
    assert xlib_run.lines("swapchain ") == ["swapchain format=0x8c43 size=64x48 layers=2 samples=1",
                                           "swapchain format=0x88f0 size=64x48 layers=2 samples=1"]


def test_egl_is_preferred_when_the_runtime_offers_both(drive, x_display: str) -> None:
    """With XR_MNDX_egl_enable offered, the EGL binding is used even though an X display is there."""
    run = drive("stop_after=1", display=x_display)
    assert "create_session binding=egl gl=ok context=-" in run.log
    assert "extension XR_MNDX_egl_enable" in run.log
    assert len(run.rendered()) >= 2


def test_real_renderer_draws_the_brain_over_glx(drive, x_display: str) -> None:
    """The real renderer, on the backend's GLX context, draws the twin into both eyes with no GL error."""
    run = drive("no_egl=1,stop_after=2", real_renderer=True, display=x_display)
    assert run.result["gl_errors"] == 0
    assert "create_session binding=xlib gl=ok context=current" in run.log
    rendered = run.rendered()
    assert len(rendered) >= 3
    shares = [float(line.split(view)[1].split()[0].split(":")[0].split("/")[2])
              for line in rendered for view in ("view0=layer0:64x48:", "view1=layer1:64x48:")]
    assert all(0.05 < share < 0.95 for share in shares), rendered


def test_lost_instance_is_torn_down_and_a_new_one_made(drive) -> None:
    """XrEventDataInstanceLossPending: session, actions and instance are destroyed, then all made again."""
    run = drive("lose_instance_after=3,stop_after=3")
    assert run.lines("instance_lost") == ["instance_lost"]
    lost = run.log.index("instance_lost")
    assert run.log[lost + 1:lost + 4] == ["destroy_session", "destroy_action_set", "destroy_instance"]
    after = run.log[lost:]
    assert sum(line.startswith("create_instance") for line in after) == 1
    assert sum(line.startswith("bindings ") for line in after) == 4  # actions and bindings belong to the instance
    assert "begin_session" in after and after[-1] == "destroy_instance"
    assert len([line for line in after if line.startswith("end_frame ") and "layers=1" in line]) >= 3


def test_submit_without_a_renderer_is_a_clear_error(drive) -> None:
    """Submitting with no renderer attached: a one-line BackendError saying what is missing; teardown still clean."""
    run = drive("stop_after=4", backend="openxr", renderer=False)
    kind, message = run.result["error"]
    assert kind == "BackendError" and "copy_to_texture_array" in message and "\n" not in message
    assert run.log[-1] == "destroy_instance"


def test_real_renderer_draws_the_brain_into_both_eyes_of_the_headset(drive) -> None:
    """The session loop with the real renderer and the brain twin 45 cm ahead: in each submitted eye the twin
    covers part of the image and the corner is background, with no GL error."""
    run = drive("stop_after=4", real_renderer=True)
    assert run.result["gl_errors"] == 0
    rendered = run.rendered()
    assert len(rendered) >= 5
    background = "".join(f"{round(255 * ((c / 12.92) if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055)):02x}"
                         for c in run.result["background"][:3])  # sRGB-encoded, as stored
    for line in rendered:
        shares = []
        for view in ("view0=layer0:64x48:", "view1=layer1:64x48:"):
            fields = line.split(view)[1].split()[0].split(":")
            corner, _, share = fields[0].split("/")
            # Depth, where the renderer writes it, states the renderer's own clip distances.
            assert fields[2:] in ([], ["depth0.05-100"]), line
            assert abs(int(corner[:2], 16) - int(background[:2], 16)) <= 2, line  # the corner is background
            shares.append(float(share))
        # The twin fills part of each eye image, not all of it.
        assert all(0.05 < share < 0.95 for share in shares), line


def test_backend_can_be_started_again_after_its_session_exited(drive) -> None:
    """start() after stop() makes a new instance and session and runs frames again."""
    run = drive("stop_after=3", backend="openxr", twice=True)
    assert len(run.result["frames"]) >= 4 and run.result["second_run_frames"] >= 4
    assert len(run.lines("begin_session")) == 2 and len(run.lines("end_session")) == 2
    assert run.log[-1] == "destroy_instance"


def test_medverse_view_runs_in_the_headset(runtime_manifest: Path, tmp_path: Path) -> None:
    """`medverse view --backend openxr` shows the brain twin in the (test) headset until the runtime ends the session."""
    log = tmp_path / "runtime.log"
    env = {**os.environ, "XR_RUNTIME_JSON": str(runtime_manifest), "MEDVERSE_XR_TEST": "stop_after=4",
           "MEDVERSE_XR_TEST_LOG": str(log)}
    medverse = Path(sys.executable).with_name("medverse")
    out = subprocess.run([str(medverse), "view", "--twin", "brain", "--backend", "openxr"], check=False,
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    rendered = [line for line in log.read_text().splitlines() if line.startswith("end_frame ") and "layers=1" in line]
    assert len(rendered) >= 4
    shares = [float(part.split(":")[2].split("/")[2]) for line in rendered for part in line.split() if part.startswith("view")]
    assert len(shares) == 2 * len(rendered) and all(share > 0.005 for share in shares)  # the twin is in view


def test_medverse_train_runs_in_the_headset_and_records_the_attempt(runtime_manifest: Path, tmp_path: Path) -> None:
    """`medverse train --backend openxr`: the module's first step is shown in the (test) headset, and when
    the runtime ends the session the unfinished attempt is in the trainee's profile, chained."""
    from sessions.profiles import open_store
    from sessions.profiles.xapi import VERBS

    log, profile = tmp_path / "runtime.log", tmp_path / "profiles.sqlite"
    module = Path(__file__).parents[1] / "sessions" / "training" / "data" / "brain-basics.json"
    env = {**os.environ, "XR_RUNTIME_JSON": str(runtime_manifest), "MEDVERSE_XR_TEST": "stop_after=6",
           "MEDVERSE_XR_TEST_LOG": str(log)}
    medverse = Path(sys.executable).with_name("medverse")
    out = subprocess.run([str(medverse), "train", "--module", str(module), "--trainee", "hana", "--backend", "openxr",
                          "--profile", str(profile)], check=False, capture_output=True, text=True, timeout=180, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    rendered = [line for line in log.read_text().splitlines() if line.startswith("end_frame ") and "layers=1" in line]
    assert len(rendered) >= 6
    assert "hana, attempt 1" in out.stdout and "not passed" in out.stdout
    with open_store(profile) as store:
        verbs = [s.statement["verb"]["id"] for s in store.statements("hana")]
        assert store.verify("hana").ok
    assert verbs[0] == VERBS["launched"] and VERBS["experienced"] in verbs and verbs[-1] == VERBS["terminated"]


# --- hands (XR_EXT_hand_tracking) and environment blend modes ---------------------------------------

#: The runtime's hand script (``hand_joint`` in the C source): the thumb-to-index tip gap is
#: PINCH_OPEN_M * (1 + cos(2 pi f / 8)) / 2 at frame f = (t - 1 s) / period; the left hand is lost at
#: frames f = 0 mod 4 and its little finger tip occluded at f = 2 mod 4.
PINCH_OPEN_M, PINCH_FRAMES = 0.08, 8
THUMB_TIP, INDEX_TIP, PALM, WRIST, INDEX_PROXIMAL = 5, 10, 0, 1, 7


def frame_number(time_s: float) -> int:
    """The runtime's frame number of a predicted display time (seconds)."""
    return round((time_s - 1.0) / (PERIOD_NS * 1e-9))


def scripted_gap(time_s: float) -> float:
    """The thumb-to-index tip distance (m) the runtime scripts for a predicted display time (seconds)."""
    return PINCH_OPEN_M * (1 + math.cos(2 * math.pi * ((time_s - 1.0) / (PERIOD_NS * 1e-9)) / PINCH_FRAMES)) / 2


def focused_frames(run: Run) -> list[dict]:
    return [f for f in run.result["frames"] if f["focused"]]


@pytest.fixture(scope="module")
def hands_run(drive) -> Run:
    """A runtime tracking bare hands (XR_EXT_hand_tracking) while Touch controllers are held."""
    return drive("hands=1,stop_after=8")


@pytest.fixture(scope="module")
def bare_hands_run(drive) -> Run:
    """A runtime tracking bare hands with no controller in either hand."""
    return drive("hands=1,controllers=0,stop_after=8")


def test_hand_joints_follow_the_runtime_pinch_at_the_predicted_display_time(hands_run: Run) -> None:
    """Each focused frame's right hand has 26 joints with radii, located at the frame's predicted display time
    in the stage space; the thumb-index tip gap is the runtime's scripted pinch, closing until the tips meet and
    opening again."""
    frames = focused_frames(hands_run)
    assert len(frames) >= PINCH_FRAMES
    gaps = []
    for f in frames:
        right = f["hands"][1]
        assert len(right["joints"]) == 26 and len(right["radii"]) == 26 and all(r > 0 for r in right["radii"])
        gap = math.dist(right["joints"][THUMB_TIP], right["joints"][INDEX_TIP])
        assert gap == pytest.approx(scripted_gap(f["time"]), abs=1e-5)
        gaps.append(gap)
    assert min(gaps) < 1e-3 and max(gaps) > 0.07  # the tips meet, and part again
    located = [int(line.split("time=")[1].split()[0]) for line in hands_run.lines("hand_joints hand=right")]
    assert located == [round(f["time"] * 1e9) for f in frames]
    assert {line.split("space=")[1] for line in hands_run.lines("hand_joints ")} == {"3"}  # STAGE


def test_a_lost_or_partly_occluded_hand_has_no_joints(hands_run: Run) -> None:
    """The left hand the runtime reports inactive (frames 0 mod 4) or with an invalid joint (2 mod 4) reaches
    the application with joints None; at the other frames it has all 26, mirrored from the right hand."""
    frames = focused_frames(hands_run)
    seen = set()
    for f in frames:
        n = frame_number(f["time"])
        left, right = f["hands"]
        if n % 2 == 0:
            assert left["joints"] is None, n
        else:
            assert len(left["joints"]) == 26
            assert [-x for x in (p[0] for p in left["joints"])] == pytest.approx([p[0] for p in right["joints"]], abs=1e-6)
        seen.add(n % 4)
    assert seen == {0, 1, 2, 3}


def test_controller_poses_win_over_the_hand_skeleton(hands_run: Run) -> None:
    """With controllers held, aim and grip are the controller's poses although the hands are tracked too."""
    for f in focused_frames(hands_run):
        right = f["hands"][1]
        assert right["joints"] is not None
        assert right["aim"] == pytest.approx([0.2, 1.3, -0.35]) and right["grip"] == pytest.approx([0.2, 1.3, -0.3])
        assert f["right"][3] == ["a"]


def test_bare_hands_point_from_the_index_knuckle_and_grip_at_the_palm(bare_hands_run: Run) -> None:
    """No controller: a tracked hand's aim starts at the index proximal joint and points from the wrist through
    it, its grip is the palm; the ray does not move while the pinch closes and opens; an untracked hand has
    neither."""
    frames = focused_frames(bare_hands_run)
    assert len(frames) >= PINCH_FRAMES
    aims = []
    for f in frames:
        for side, h in enumerate(f["hands"]):
            if h["joints"] is None:
                assert (h["aim"], h["grip"]) == (None, None)
                continue
            knuckle, wrist = h["joints"][INDEX_PROXIMAL], h["joints"][WRIST]
            direction = [k - w for k, w in zip(knuckle, wrist, strict=True)]
            length = math.hypot(*direction)
            assert h["aim"] == pytest.approx(knuckle) and h["grip"] == pytest.approx(h["joints"][PALM])
            assert h["aim_forward"] == pytest.approx([d / length for d in direction], abs=1e-6)
            if side == 1:
                aims.append(h["aim"] + h["aim_forward"])
        trigger, squeeze, stick, buttons, *_ = f["right"]
        assert (trigger, squeeze, stick, buttons) == (0.0, 0.0, [0.0, 0.0], [])
    assert len(aims) == len(frames) and all(a == pytest.approx(aims[0], abs=1e-6) for a in aims)
    assert "hand tracking on" in bare_hands_run.stderr


def test_hand_trackers_are_made_per_hand_and_destroyed_before_the_session(hands_run: Run) -> None:
    """The extension is enabled, the system asked whether it tracks hands, one tracker made per hand, and both
    destroyed before the session is."""
    assert "extension XR_EXT_hand_tracking" in hands_run.log
    assert "system_properties hand_tracking=1" in hands_run.log
    assert hands_run.lines("hand_tracker ") == ["hand_tracker left", "hand_tracker right"]
    assert hands_run.log[-5:] == ["destroy_hand_tracker left", "destroy_hand_tracker right", "destroy_session",
                                  "destroy_action_set", "destroy_instance"]


def test_a_system_without_hand_tracking_makes_no_trackers(drive) -> None:
    """XR_EXT_hand_tracking offered but XrSystemHandTrackingPropertiesEXT says no: no tracker is made, joints stay
    None, the controllers work as before."""
    run = drive("hands=2,stop_after=4")
    assert "system_properties hand_tracking=0" in run.log
    assert run.lines("hand_tracker ") == [] and run.lines("hand_joints ") == []
    frames = focused_frames(run)
    assert len(frames) >= 4
    assert all(h["joints"] is None for f in frames for h in f["hands"])
    assert all(f["right"][4] == pytest.approx([0.2, 1.3, -0.35]) for f in frames)
    assert "hand tracking off" in run.stderr


def test_a_runtime_without_the_extension_gives_no_joints(full_run: Run) -> None:
    """Without XR_EXT_hand_tracking nothing about hands is asked of the runtime and every hand's joints are None."""
    assert not any("hand" in line for line in full_run.log if not line.startswith("haptic "))
    assert all(h["joints"] is None for f in full_run.result["frames"] for h in f["hands"])
    assert focused_frames(full_run)


def test_auto_blend_takes_the_runtimes_first_mode(drive) -> None:
    """blend='auto' submits every frame with the mode the runtime lists first (here additive, though opaque is
    offered too), and reports it and the offered modes in BackendInfo; no alpha flag on the layer."""
    run = drive("blend=additive/opaque/alpha,stop_after=2")
    assert run.result["blend"] == ["additive", ["additive", "opaque", "alpha"]]
    ends = run.lines("end_frame ")
    assert ends and all(" blend=additive " in line for line in ends)
    assert run.rendered() and all(" flags=0x0 " in line for line in run.rendered())


def test_default_runtime_is_opaque_with_no_layer_flags(full_run: Run) -> None:
    """A runtime offering only opaque: frames go with the opaque mode and projection layers without flags."""
    assert full_run.result["blend"] == ["opaque", ["opaque"]]
    assert all(" blend=opaque " in line for line in full_run.lines("end_frame "))
    assert all(" flags=0x0 " in line for line in full_run.rendered())


def test_alpha_blend_is_submitted_with_the_texture_alpha_flag(drive) -> None:
    """blend='alpha' on a runtime offering it second: every frame goes with XR_ENVIRONMENT_BLEND_MODE_ALPHA_BLEND
    and the projection layer with XR_COMPOSITION_LAYER_BLEND_TEXTURE_SOURCE_ALPHA_BIT (0x2) alone, never
    UNPREMULTIPLIED_ALPHA_BIT (0x4)."""
    run = drive("blend=opaque/alpha,stop_after=3", blend="alpha")
    assert run.result["blend"] == ["alpha", ["opaque", "alpha"]]
    assert all(" blend=alpha " in line for line in run.lines("end_frame "))
    rendered = run.rendered()
    assert len(rendered) >= 3 and all(" flags=0x2 " in line for line in rendered)


def test_a_blend_mode_the_runtime_does_not_offer_fails_in_one_line(drive) -> None:
    """blend='alpha' on a runtime offering opaque and additive: start() raises BackendError in one line naming
    the offered modes; no session is begun and everything made is destroyed."""
    run = drive("blend=opaque/additive", backend="openxr", blend="alpha")
    kind, message = run.result["start_error"]
    assert kind == "BackendError" and "\n" not in message
    assert "'alpha'" in message and "opaque, additive" in message
    assert "begin_session" not in run.log and run.log[-1] == "destroy_instance"


def test_the_session_loop_in_a_headset_selects_with_a_pinch_and_draws_over_the_room(drive) -> None:
    """The same session loop as the simulator's drives the OpenXR backend: the runtime's tracked right hand
    points at the brain and pinches, which selects the structure it points at; with the alpha blend mode the
    scene clears to transparent black and every frame goes out with the alpha-blend layer flag."""
    run = drive("hands=1,controllers=0,blend=alpha/opaque,stop_after=14", real_renderer=True,
                centre=(0.0, 1.3, -0.75))
    assert run.result["gl_errors"] == 0
    assert run.result["blend"] == ["alpha", ["alpha", "opaque"]]
    assert run.result["background"] == [0.0, 0.0, 0.0, 0.0]
    selects = [i for i in run.result["intents"] if i["kind"] == "select"]
    assert selects and all(s["structure"] and "hemisphere" in s["structure"] for s in selects), run.result["intents"]
    rendered = run.rendered()
    assert rendered and all("blend=alpha" in line and "flags=0x2" in line for line in rendered)



@pytest.mark.parametrize(("blend", "ok"), [("alpha", True), ("additive", False)])
def test_medverse_view_runs_the_session_in_the_headset_with_the_blend_mode_asked(
    runtime_manifest: Path, tmp_path: Path, blend: str, ok: bool
) -> None:
    """`medverse view --backend openxr --blend B` runs the session loop in the headset with that blend mode,
    or, when the runtime does not offer it, stops with one line naming what it offers (exit 2)."""
    env = {**os.environ, "XR_RUNTIME_JSON": str(runtime_manifest), "MEDVERSE_XR_TEST": "blend=alpha/opaque,stop_after=6",
           "MEDVERSE_XR_TEST_LOG": str(tmp_path / "log")}
    env.pop("DISPLAY", None)
    out = subprocess.run([str(Path(sys.executable).with_name("medverse")), "view", "--backend", "openxr", "--blend", blend],
                         check=False, capture_output=True, text=True, timeout=120, env=env)
    if ok:
        assert out.returncode == 0, out.stderr[-2000:]
        assert "blend mode alpha" in out.stdout
        assert any("blend=alpha" in line for line in (tmp_path / "log").read_text().splitlines())
    else:
        assert out.returncode == 2
        err = out.stderr.strip().splitlines()[-1]
        assert err.startswith("medverse: error:") and "additive" in err and "alpha" in err
