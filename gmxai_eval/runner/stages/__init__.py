"""The stages of a run, composed by :func:`gmxai_eval.runner.run.run_benchmark`.

Each stage is a function of the shared :class:`~gmxai_eval.runner.context.RunContext` that
returns its output: ``load`` (fills the context), ``attribute`` (maps), ``evaluate`` and
``dataset_scope`` (table rows), ``reliability`` (``results["reliability"]``), ``sections``
(``results["sections"]``), ``summarise`` (the results document) and ``write`` (the run folder).
A new stage is a module here with one such function, called in ``run_benchmark``.
"""
