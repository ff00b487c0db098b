"""Errors of trainee profiles: one small hierarchy whose messages are one line the CLI can print.

Every error a user can cause (a bad statement, a database that is not a profile, a token that does not
grant the action) is a :class:`ProfileError`; ``str(error)`` names what was wrong.
"""

from __future__ import annotations


class ProfileError(Exception):
    """Something is wrong with a profile, a statement or the store that holds them."""


class CorruptProfileError(ProfileError):
    """The database exists but is not a readable medverse profile database; it is never recreated."""


class AccessError(ProfileError):
    """A token is missing, forged, expired, or does not allow this action on this trainee's profile."""
