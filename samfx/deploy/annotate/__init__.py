"""``samfx annotate``: segment images and cine loops by hand in the browser, with a trained model's help
(docs/annotate.md).

:class:`~samfx.deploy.annotate.session.AnnotationSession` is the one source of truth: the web server
(:mod:`samfx.deploy.annotate.server`) only turns HTTP requests into its operations, and the tests compare
the page's masks with the session's own. Modules: ``access`` (allowed folders, tokens, errors), ``loops``
(what can be opened), ``features`` (the per-frame embedding cache and its background precompute),
``modelops`` (the model calls: clicks, automatic, propagation), ``session``, ``history`` (undo/redo),
``save`` (PNG, NIfTI, HDF5 store, session JSON), ``server``.
"""
