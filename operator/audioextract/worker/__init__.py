"""The worker: one task in, one audio file and one result JSON out (DESIGN §4).

It runs in the worker image and in the local runner; it never imports kopf or a
Kubernetes client.
"""
