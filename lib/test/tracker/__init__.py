"""Test-time trackers with the pytracking API (``initialize`` / ``track``)."""
from lib.test.tracker.ostrack import OSTrackTracker, hann2d
from lib.utils.boxes import InvalidBoxError

__all__ = ["InvalidBoxError", "OSTrackTracker", "hann2d"]
