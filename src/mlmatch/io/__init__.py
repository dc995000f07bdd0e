"""Tables in and out: formats, the rows mlmatch adds, and the engines that score whole files.

* :mod:`~mlmatch.io.formats`: the formats and the chunked reader every format yields.
* :mod:`~mlmatch.io.tables` and :mod:`~mlmatch.io.excel`: reading each format.
* :mod:`~mlmatch.io.writers` and :mod:`~mlmatch.io.outputs`: writing, and never losing a file.
* :mod:`~mlmatch.io.rows`: the columns mlmatch adds and the one function that fills them.
* :mod:`~mlmatch.io.local` and :mod:`~mlmatch.io.ray`: the two engines, one summary.
"""
