"""Pure, synchronous correlation of captures taken at several points of one path.

Public API (used by cli.py; never imports orchestrator or asyncssh):

    correlate(points: Sequence[PointInput], *, conntrack=None) -> Verdict
"""
