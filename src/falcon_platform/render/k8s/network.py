"""Who reaches the pods and whom they reach: Service, NetworkPolicies, ServiceAccount, Namespace.

The serving pods accept HTTPS on their one port from anywhere (clients, Prometheus, the
kubelet's probes) and open connections only to DNS, Redis and PostgreSQL. The migration
Job accepts nothing and reaches only DNS and PostgreSQL. The stores' addresses are in the
Secret (their URLs hold passwords), so the policies allow their ports, not their hosts.
"""

from __future__ import annotations

from typing import Any

from falcon_platform.render.k8s import options as o
from falcon_platform.render.k8s.names import Names

DNS_PEERS = [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]


def service(names: Names) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": names.service, "labels": names.labels("server")},
        "spec": {
            "type": "ClusterIP",
            "selector": names.selector("server"),
            "ports": [
                {
                    "name": o.PORT_NAME,
                    "port": o.SERVICE_PORT,
                    "targetPort": o.PORT_NAME,
                    "protocol": "TCP",
                    "appProtocol": "https",
                }
            ],
        },
    }


def service_account(names: Names) -> dict[str, Any]:
    """The pods call no Kubernetes API: no token is mounted (the pods say so too)."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": names.service_account, "labels": names.labels("server")},
        "automountServiceAccountToken": False,
    }


def _egress(*ports: int) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [
        {
            "to": DNS_PEERS,
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        }
    ]
    rules += [{"ports": [{"protocol": "TCP", "port": port}]} for port in ports]
    return rules


def serving_policy(names: Names, options: o.K8sOptions) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": names.service, "labels": names.labels("server")},
        "spec": {
            "podSelector": {"matchLabels": names.selector("server")},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": o.PORT_NAME}]}],
            "egress": _egress(options.redis_port, options.postgres_port),
        },
    }


def migrate_policy(names: Names, options: o.K8sOptions) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": names.migrate_policy, "labels": names.labels("db-upgrade")},
        "spec": {
            "podSelector": {"matchLabels": names.selector("db-upgrade")},
            "policyTypes": ["Ingress", "Egress"],
            "egress": _egress(options.postgres_port),
        },
    }


def namespace(name: str) -> dict[str, Any]:
    """Pod Security Admission ``restricted`` enforced: the pods above satisfy it."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    }
