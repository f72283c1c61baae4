"""Study reports: pure data functions (``data.py``), drawing functions (``figures.py``), and
the assembly of one offline HTML file (``html.py``)."""
