"""The imperative shell around the core: os-ken application, switch sessions, the runner.

Import `controller.app.hub_compat` before anything from os_ken (the runner does).
"""
