"""The measurement core: what the numbers mean and how they are counted, in one place.

`definitions` says which sample rows feed which metric (TTFT, ITL, TPOT, E2E, ...);
`histogram` is the HDR histogram, `codec` its standard V2 encoding, `interval_log` the
HdrHistogram interval log; `statistics` renders spans of samples as the JSON blocks of
snapshots, summaries and exports. The coordinator's aggregator and the standalone executor's
summary both use it, so they cannot disagree.
"""
