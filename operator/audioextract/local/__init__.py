"""The local runner: ``audio-extract run FILE`` runs a Batch or an ExtractionJob on one machine.

No Kubernetes: the same models, defaults resolution, worker (as a subprocess, as in
the image), admission order, rollup and webhooks as the operator (docs/local.md).
"""
