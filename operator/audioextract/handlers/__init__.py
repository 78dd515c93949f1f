"""The operator: thin kopf handlers that observe, call the pure reconcile logic, and act.

All kopf registrations live in :mod:`audioextract.handlers.registry`; the command is
:mod:`audioextract.handlers.main`.
"""
