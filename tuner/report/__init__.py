"""Study reports: pure data functions (``data.py``), drawing functions (``figures.py``), the
assembly of one offline HTML file (``html.py``), and the live dashboard (``dashboard.py``)."""
