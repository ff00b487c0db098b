"""Recording and replay of consultations.

- ``format``: the versioned ``.mvr`` container (docs/recording.md): append-only records with
  length, type, time and CRC, written as they come (a crash loses at most the last second);
- ``recorder``: :class:`~sessions.recording.recorder.SessionRecorder`, attached to a participant;
- ``replay``: a recording as a source of poses and ops driven by a clock, rendered again in the
  simulator, its state at any time, and a participant's part as intents a training module scores.
"""
