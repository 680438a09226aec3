"""The pure core: policy model, pipeline, compiler, reference verdicts and flow diffs.

Nothing here does I/O, reads a clock or imports os_ken, yaml or prometheus_client.
"""
