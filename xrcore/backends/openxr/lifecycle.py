"""The OpenXR session lifecycle (OpenXR 1.0, section 9.3 "Session Lifecycle"; ``XrSessionState``).

Pure data and logic, no ``xr`` calls, tested against the OpenXR 1.0 specification:
:class:`SessionState` (``XrSessionState``), :data:`SPEC_TRANSITIONS` (the session lifecycle the
specification draws) and :class:`SessionStateMachine` (what the application must do on each state
change, loss or exit request). :class:`~xrcore.backends.openxr.backend.OpenXRBackend` feeds it the
runtime's events and carries out the actions it returns.
"""

from __future__ import annotations

import enum
import logging

logger = logging.getLogger("xrcore.backends.openxr")  # the backend's one logger, named as before the split


class SessionState(enum.IntEnum):
    """``XrSessionState``, with the values the specification gives them."""

    UNKNOWN = 0
    IDLE = 1
    READY = 2
    SYNCHRONIZED = 3
    VISIBLE = 4
    FOCUSED = 5
    STOPPING = 6
    LOSS_PENDING = 7
    EXITING = 8


_S = SessionState
#: The transitions the session lifecycle allows a runtime to report. A new session starts (UNKNOWN)
#: in IDLE; READY asks the application to begin; once begun the runtime moves through SYNCHRONIZED,
#: VISIBLE and FOCUSED and back, and leaves through STOPPING (from SYNCHRONIZED) to IDLE once the
#: application ended the session; EXITING follows IDLE when the session should not restart; any
#: state may be followed by LOSS_PENDING. EXITING and LOSS_PENDING are final: the session is destroyed.
SPEC_TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    _S.UNKNOWN: frozenset({_S.IDLE, _S.LOSS_PENDING}),
    _S.IDLE: frozenset({_S.READY, _S.EXITING, _S.LOSS_PENDING}),
    _S.READY: frozenset({_S.SYNCHRONIZED, _S.LOSS_PENDING}),
    _S.SYNCHRONIZED: frozenset({_S.VISIBLE, _S.STOPPING, _S.LOSS_PENDING}),
    _S.VISIBLE: frozenset({_S.SYNCHRONIZED, _S.FOCUSED, _S.LOSS_PENDING}),
    _S.FOCUSED: frozenset({_S.VISIBLE, _S.LOSS_PENDING}),
    _S.STOPPING: frozenset({_S.IDLE, _S.LOSS_PENDING}),
    _S.LOSS_PENDING: frozenset(),
    _S.EXITING: frozenset(),
}


class SessionAction(enum.Enum):
    """What the application must do in answer to a lifecycle event, in the order given."""

    BEGIN_SESSION = "xrBeginSession"
    END_SESSION = "xrEndSession"
    REQUEST_EXIT = "xrRequestExitSession"
    DESTROY_SESSION = "xrDestroySession"
    RECREATE_SESSION = "create a new session when the system is back"
    DESTROY_INSTANCE = "xrDestroyInstance"
    RECREATE_INSTANCE = "create a new instance when the runtime is back"
    EXIT = "stop producing frames"


class SessionStateMachine:
    """The application side of the OpenXR session lifecycle, as pure logic.

    Feed it what the runtime reports (:meth:`on_state_changed`, :meth:`on_instance_loss_pending`)
    and what the user wants (:meth:`request_exit`); each returns the :class:`SessionAction` list to
    carry out, in order. Every state change is logged once, here, as ``old -> new``. A transition the
    lifecycle does not allow is logged as a warning and counted in :attr:`unexpected`, then followed
    (the runtime owns the state); a value that is not an ``XrSessionState`` is counted and ignored.
    """

    def __init__(self) -> None:
        self.state = SessionState.UNKNOWN
        #: True from xrBeginSession until xrEndSession (or the session's loss): frames must be run.
        self.running = False
        #: The user asked to leave; the session is not recreated after this.
        self.exit_requested = False
        #: Transitions outside :data:`SPEC_TRANSITIONS` and unknown state values seen.
        self.unexpected = 0
        #: True once the machine has told the caller to stop (EXIT returned).
        self.exited = False

    # -- what the frame loop may do now ---------------------------------------------------------------

    @property
    def frame_loop(self) -> bool:
        """xrWaitFrame / xrBeginFrame / xrEndFrame must be called (the session is running)."""
        return self.running

    @property
    def should_render(self) -> bool:
        """The user can see this application's frames (VISIBLE or FOCUSED)."""
        return self.running and self.state in (SessionState.VISIBLE, SessionState.FOCUSED)

    @property
    def input_focused(self) -> bool:
        """Controller input reaches this application (FOCUSED); otherwise actions read as inactive."""
        return self.running and self.state is SessionState.FOCUSED

    # -- events -----------------------------------------------------------------------------------------

    def session_created(self) -> None:
        """A new session exists (initially or after a loss): it starts over from UNKNOWN."""
        self.state = SessionState.UNKNOWN
        self.running = False

    def on_state_changed(self, value: int) -> list[SessionAction]:
        """The runtime reported ``XrEventDataSessionStateChanged`` with state ``value``."""
        try:
            new = SessionState(int(value))
        except ValueError:
            self.unexpected += 1
            logger.warning("runtime reported unknown session state %r; ignored", value)
            return []
        old = self.state
        if new is old:
            return []
        if new not in SPEC_TRANSITIONS[old]:
            self.unexpected += 1
            logger.warning("session state %s -> %s is not a transition OpenXR allows; following the runtime",
                           old.name, new.name)
        else:
            logger.info("session state %s -> %s", old.name, new.name)
        self.state = new
        if new is SessionState.READY:
            if self.exit_requested:
                return self._exit()
            self.running = True
            return [SessionAction.BEGIN_SESSION]
        if new is SessionState.STOPPING:
            was_running, self.running = self.running, False
            return [SessionAction.END_SESSION] if was_running else []
        if new is SessionState.EXITING:
            return self._exit()
        if new is SessionState.LOSS_PENDING:
            # The session is already lost to the runtime: no xrEndSession, only its destruction.
            self.running = False
            if self.exit_requested:
                return self._exit()
            return [SessionAction.DESTROY_SESSION, SessionAction.RECREATE_SESSION]
        return []

    def on_instance_loss_pending(self) -> list[SessionAction]:
        """The runtime reported ``XrEventDataInstanceLossPending``: everything goes, then maybe again."""
        logger.info("session state %s -> instance lost", self.state.name)
        self.running = False
        self.state = SessionState.UNKNOWN
        if self.exit_requested:
            self.exited = True
            return [SessionAction.DESTROY_SESSION, SessionAction.DESTROY_INSTANCE, SessionAction.EXIT]
        return [SessionAction.DESTROY_SESSION, SessionAction.DESTROY_INSTANCE, SessionAction.RECREATE_INSTANCE]

    def request_exit(self) -> list[SessionAction]:
        """The user wants to leave: a running session is asked to stop; any other one goes now."""
        if self.exited:
            return []
        self.exit_requested = True
        if self.running:
            return [SessionAction.REQUEST_EXIT]
        return self._exit()

    def _exit(self) -> list[SessionAction]:
        self.running = False
        self.exited = True
        return [SessionAction.DESTROY_SESSION, SessionAction.EXIT]
