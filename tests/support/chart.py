"""The Helm chart rendered by a real Helm engine (helm-python-sdk: Helm v4's Go SDK), offline."""

from typing import Any

import yaml

from tools.chart import CHART, RELEASE, render

Obj = dict[str, Any]

__all__ = ["CHART", "RELEASE", "every_feature", "objects", "render"]


def objects(
    values: Obj | None = None, namespace: str = "audio-extract-system", release: str = RELEASE
) -> list[Obj]:
    """Every object the chart renders with ``values`` (NOTES.txt left out)."""
    out: list[Obj] = []
    for name, text in sorted(render(values or {}, namespace, release).items()):
        if name.endswith(".yaml"):
            out.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return out


def every_feature(watch: list[str] | None = None) -> Obj:
    """Values that switch every optional part of the chart on."""
    values: Obj = {
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        },
        "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
        "dashboard": {"enabled": True, "annotations": {"grafana_folder": "Media"}},
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                    }
                }
            ],
            "egress": [
                {
                    "to": [
                        {
                            "namespaceSelector": {},
                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                        }
                    ],
                    "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
                },
                {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]},
            ],
        },
        "config": {
            "defaultDestination": {"s3": {"bucket": "audio", "prefix": "out"}},
            "maxConcurrentJobs": 5,
            "maxJobsPerBatch": 100,
            "defaultRequests": {"cpu": "250m", "memory": "128Mi"},
            "defaultLimits": {"memory": "768Mi"},
            "tempSizeLimit": "1Gi",
            "resyncSeconds": 30,
            "leaseDurationSeconds": 20,
            "allowNetworks": "10.0.0.0/8",
            "s3": {
                "credentialsSecret": "audio-s3",
                "endpoint": "https://s3.example.com",
                "region": "eu-west-1",
            },
        },
        "extraEnv": [{"name": "AUDIOEXTRACT_WEBHOOK_TIMEOUT", "value": "10"}],
        "worker": {"serviceAccount": {"annotations": {"example.com/role": "audio-writer"}}},
        "podDisruptionBudget": {"enabled": True},
        "image": {"digest": "sha256:" + "a" * 64},
    }
    if watch:
        values["watchNamespaces"] = watch
    return values
