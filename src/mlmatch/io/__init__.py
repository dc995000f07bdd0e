"""Tables in and out: formats, the rows mlmatch adds, and the engines that score whole files.

* :mod:`~mlmatch.io.formats`: the formats and the chunked reader every format yields.
* :mod:`~mlmatch.io.rows`: the columns mlmatch adds, declared once, and the one row scorer.
* :mod:`~mlmatch.io.job`: a scoring job, every option checked once when it is built.
* :mod:`~mlmatch.io.tables` and :mod:`~mlmatch.io.excel`: reading each format.
* :mod:`~mlmatch.io.writers`, :mod:`~mlmatch.io.workbook` and :mod:`~mlmatch.io.outputs`:
  writing (Excel workbooks too), and never losing a file.
* :mod:`~mlmatch.io.local` and :mod:`~mlmatch.io.ray`: the two engines, one summary.
"""
