"""Test-time trackers with the pytracking API (``initialize`` / ``track``)."""
from lib.test.tracker.ostrack import InvalidBoxError, OSTrackTracker, hann2d

__all__ = ["InvalidBoxError", "OSTrackTracker", "hann2d"]
