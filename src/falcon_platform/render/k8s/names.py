"""Object names and labels, all derived from the spec's service name::

names = Names("falcon")
names.settings, names.secret          # "falcon-settings", "falcon-secrets"
names.selector("server")              # the immutable selector of the serving pods
"""

from __future__ import annotations

from dataclasses import dataclass

from falcon_platform.render.k8s import options as o


@dataclass(frozen=True)
class Names:
    service: str

    @property
    def workload(self) -> str:
        return self.service

    @property
    def settings(self) -> str:
        return f"{self.service}-settings"

    @property
    def spec(self) -> str:
        return f"{self.service}-spec"

    @property
    def secret(self) -> str:
        """Secret the operator creates: keys are the FALCON_* names of the secret settings."""
        return f"{self.service}-secrets"

    @property
    def tls(self) -> str:
        """kubernetes.io/tls Secret the operator creates (tls.crt, tls.key; ca.crt to verify)."""
        return f"{self.service}-tls"

    @property
    def service_account(self) -> str:
        return self.service

    @property
    def dashboard(self) -> str:
        return f"{self.service}-dashboard"

    @property
    def cluster_rules(self) -> str:
        """PrometheusRule of the cluster-only alerts (kube-state-metrics, Argo Rollouts)."""
        return f"{self.service}-kubernetes"

    @property
    def canary_analysis(self) -> str:
        """AnalysisTemplate: the canary judge, measured through a Rollout's canary steps."""
        return f"{self.service}-canary"

    @property
    def canary_traffic(self) -> str:
        """AnalysisTemplate: did the canary serve enough requests for a verdict (each step)."""
        return f"{self.service}-canary-traffic"

    @property
    def migrate_policy(self) -> str:
        return f"{self.service}-db-upgrade"

    def migrate_job(self, release_hash: str) -> str:
        return f"{self.service}-db-upgrade-{release_hash}"

    def selector(self, component: str) -> dict[str, str]:
        """Selector labels: never change them (a Deployment's or Rollout's selector is immutable)."""
        return {o.NAME_LABEL: self.service, o.COMPONENT_LABEL: component}

    def labels(self, component: str) -> dict[str, str]:
        return {
            **self.selector(component),
            "app.kubernetes.io/part-of": "falcon",
            "app.kubernetes.io/managed-by": "falcon-render",
        }
