"""`python -m tools.bench`: Keel against its baselines, measured in one run, as ratios.

Modules, one idea each:
  data.py       the data set: clustered float32 vectors, small payloads, queries, exact top-10
  client.py     the HTTP load generator shared by Keel and the HTTP floor (aiohttp + orjson)
  baselines.py  the in-process baselines: fsync ceiling, raw hnswlib, qdrant-edge
  floor.py      the HTTP floor: a bare aiohttp server with a canned 10-hit search answer
  chroma.py     Chroma's server, in its own virtualenv, driven by chroma_driver.py
  keel.py       Keel over HTTP as a user drives it (a real server subprocess)
  report.py     targets, the table on stdout, the JSON file and the PNG plot
  __main__.py   the command line and the order of the phases

Nothing here is a pass/fail test: the machine may be shared and noisy, so only ratios
measured in one run mean anything, and every target is reported as PASS or MISS.
"""
