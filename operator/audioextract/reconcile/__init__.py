"""Pure reconcile logic: desired children, Job manifests, rollup, admission, observation.

Nothing here performs I/O or imports kopf, aiohttp or a Kubernetes client, so the
operator's handlers and the local runner share it and unit tests cover it directly.
"""
