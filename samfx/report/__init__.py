"""``samfx report``: one self-contained HTML page about a trained and evaluated run (docs/report.md).

collect (the run's numbers and overlays) -> stats (CIs, ranking, Bland-Altman) -> figures / html ->
page (the document) -> write (``write_report``, the entry point).
"""
