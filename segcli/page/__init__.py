"""``segcli report``: one page for a manager (SPEC §10), as self-contained HTML or Markdown
with PNG charts. :mod:`results` gathers what the page shows from the same functions as
``summary``, ``pareto`` and ``diff``; :mod:`html` and :mod:`markdown` only lay it out."""
