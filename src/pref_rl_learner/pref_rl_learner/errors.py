"""Typed errors of pref-rl: every rejection of bad input raises one, naming the problem."""


class PrefRLError(Exception):
    """Base class of every error pref-rl raises on purpose."""


class InvalidSegmentError(PrefRLError, ValueError):
    """A segment has inconsistent shapes, wrong dtypes or non-finite values."""


class InvalidLabelError(PrefRLError, ValueError):
    """A preference label has an unknown choice, an empty query id or a bad response time."""


class InvalidQueryError(PrefRLError, ValueError):
    """A preference query has no id or pairs segments of different observation shapes."""


class InvalidWeightsError(PrefRLError, ValueError):
    """Policy weights hold a non-numeric or non-finite tensor."""


class MalformedMessageError(PrefRLError, ValueError):
    """A ROS message cannot be converted: array lengths disagree with the declared shapes."""


class LaunchFileError(PrefRLError):
    """A launch file is malformed or uses something outside the supported XML subset.

    The message names the file, the line and the tag or substitution at fault.
    """
