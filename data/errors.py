"""The errors img2mesh reports to users as one line.

Every stage raises one of these for anything a user can fix; the CLI prints the message and exits
with the class's exit code. Anything else is a bug and keeps its traceback.
"""


class Img2MeshError(Exception):
    """Base class: the message is a complete, actionable sentence."""

    exit_code = 1


class InputError(Img2MeshError):
    """Bad user input: an unreadable image, a malformed views folder, an unknown scene name."""

    exit_code = 2


class ResourceError(Img2MeshError):
    """Something that must be downloaded or placed on disk is missing (weights, scenes, models)."""

    exit_code = 3


class UnavailableError(Img2MeshError):
    """A capability that is not available in this installation or on this device."""

    exit_code = 4


class DivergedError(Img2MeshError):
    """An optimisation left its sane range and could not be brought back (the message names the likely cause)."""

    exit_code = 5
