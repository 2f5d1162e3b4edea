"""What sits above a run: the façade the book's three programs share, plots, and ``nn3 book``.

    >>> from nn3.book import command, facade, plots

``facade`` is the base of nn3.network, nn3.network2 and nn3.network3; ``plots`` draws
a run's curves, misclassified digits and filters; ``table``, ``report`` and
``command`` are ``nn3 book``: the book's results table, trained and reported.
"""
__all__ = ["command", "facade", "plots", "report", "table"]
