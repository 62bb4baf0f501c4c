"""`movielab serve`: an HTTP API and a web page over trained checkpoints, streaming text as it is
written and decoding the rows of concurrent requests to one model in one batch.

app.py (routes), scheduler.py (one continuous-batching loop per text model), checks.py (a body
turned into rows, or a 4xx naming the field), served.py (the models named at start), schemas.py
(the JSON bodies), static/ (the page: plain HTML, CSS and JS, nothing from a CDN).
"""
