"""The steps between embeddings and answers, as pure functions on arrays (no I/O, no models).

* :mod:`~mlmatch.pipeline.scoring`: exemplar similarities to one score per category, and the
  decision (the winning category of each row, or none).
* :mod:`~mlmatch.pipeline.windows`: the scores of a long text's windows merged into one row.
* :mod:`~mlmatch.pipeline.context`: leaving out the sentences that only set the scene.
* :mod:`~mlmatch.pipeline.crossfit`: scores of the exemplars by heads fitted without them.
* :mod:`~mlmatch.pipeline.explain`: score rows to :class:`~mlmatch.Classification` results.
"""
