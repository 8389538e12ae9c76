"""VOT challenge integration: our trackers over the TraX protocol, and local VOT workspaces (docs/vot.md)."""
