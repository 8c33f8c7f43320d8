"""`falcon render prometheus|grafana|k8s|systemd [--out DIR]`: outputs rendered from the spec.

Without ``--out`` the text goes to stdout (pipe it anywhere); with ``--out`` each file
is written atomically (temp file + rename) and its path printed on stderr::

    falcon render prometheus --out deploy/prometheus
    falcon render grafana --spec falcon.yaml > dashboard.json
    falcon render k8s --out deploy/k8s --image registry.example/falcon:0.1.0
    falcon render k8s --env prod | kubectl apply --dry-run=client -f -
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from falcon_platform.config.spec import Spec

app = typer.Typer(
    help="Render Prometheus rules, the Grafana dashboard, Kubernetes manifests and the systemd "
    "unit from the spec.",
    no_args_is_help=True,
)

SpecOpt = Annotated[
    Path | None,
    typer.Option(
        "--spec", help="Spec file (default: falcon.yaml, or the built-in defaults if absent)."
    ),
]
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", help="Directory to write into (created if missing); stdout if omitted."),
]


def _emit(
    render: Callable[[Spec], dict[str, str]], spec_path: Path | None, out: Path | None
) -> None:
    from falcon_platform.config.specfile import load_spec
    from falcon_platform.files import write_atomic

    files = render(load_spec(spec_path))
    if out is None:
        for text in files.values():
            typer.echo(text, nl=False)
        return
    stderr = Console(stderr=True, highlight=False)
    for name, text in files.items():
        write_atomic(out / name, text)
        stderr.print(f"wrote {out / name}")


@app.command()
def prometheus(spec: SpecOpt = None, out: OutOpt = None) -> None:
    """Prometheus rule file: SLI recording rules, burn-rate and runtime alerts."""
    from falcon_platform.render.prometheus import render_prometheus

    _emit(render_prometheus, spec, out)


@app.command()
def grafana(spec: SpecOpt = None, out: OutOpt = None) -> None:
    """Grafana dashboard JSON (import it; pick the Prometheus data source)."""
    from falcon_platform.render.grafana import render_grafana

    _emit(render_grafana, spec, out)


EnvOpt = Annotated[
    str | None,
    typer.Option(
        "--env",
        help="dev, staging or prod: only this overlay (with --out), or print this environment's "
        "manifests (without --out).",
    ),
]
ImageOpt = Annotated[
    str | None,
    typer.Option(
        "--image", help="Container image, pinned by tag or digest (default falcon:<version>)."
    ),
]

PrometheusUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--prometheus-url",
        help="Where Argo Rollouts queries Prometheus for the canary analysis "
        "(default http://prometheus-operated.monitoring.svc:9090).",
    ),
]
DeploymentOpt = Annotated[
    bool,
    typer.Option(
        "--deployment",
        help="A Deployment even when the spec has canary steps (a cluster without Argo "
        "Rollouts: no canary, no analysis).",
    ),
]


@app.command()
def k8s(
    spec: SpecOpt = None,
    out: OutOpt = None,
    env: EnvOpt = None,
    image: ImageOpt = None,
    prometheus_url: PrometheusUrlOpt = None,
    deployment: DeploymentOpt = False,
) -> None:
    """Kubernetes: a Kustomize layout (base + overlays per environment); docs/KUBERNETES.md.

    Each environment's settings are loaded like `falcon config check --profile ENV` does
    (config/ENV.env, .env, the environment); secret settings become Secret references. With
    canary steps in the spec the pods run as an Argo Rollout judged by AnalysisTemplates."""
    from falcon_platform.config.settings import load_settings
    from falcon_platform.config.specfile import load_spec
    from falcon_platform.errors import ConfigError
    from falcon_platform.files import write_atomic
    from falcon_platform.render.k8s import ENVIRONMENTS, K8sOptions, render_layout, render_manifests

    if env is not None and env not in ENVIRONMENTS:
        raise ConfigError(f"--env {env!r}: use one of {', '.join(ENVIRONMENTS)}")
    if out is None and env is None:
        raise ConfigError(
            "give --out DIR for the Kustomize layout, or --env ENV to print one environment's "
            "manifests on stdout"
        )
    overrides: dict[str, Any] = {}
    if image is not None:
        overrides["image"] = image
    if prometheus_url is not None:
        overrides["prometheus_url"] = prometheus_url
    if deployment:
        overrides["rollout"] = False
    options = K8sOptions(**overrides)
    the_spec = load_spec(spec)
    chosen = [env] if env is not None else list(ENVIRONMENTS)
    settings = {e: load_settings(profile=e) for e in chosen}
    if out is None:
        assert env is not None
        typer.echo(render_manifests(the_spec, settings[env], options, env), nl=False)
        return
    files = render_layout(the_spec, settings, options)
    for name, text in files.items():
        write_atomic(out / name, text)
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"wrote {len(files)} files under {out}: base/, "
        + ", ".join(f"overlays/{e}/" for e in chosen)
        + ", components/ (kubectl apply -k "
        + f"{out / 'overlays' / chosen[-1]})"
    )


@app.command()
def systemd(
    env_file: Annotated[
        Path | None,
        typer.Option("--env-file", help="The deployment's settings (passed to `falcon up`)."),
    ] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", "-p", help="dev, staging or prod.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", min=1, help="Worker processes.")
    ] = None,
    user: Annotated[str, typer.Option("--user", help="The account the service runs as.")] = (
        "falcon"
    ),
    group: Annotated[str | None, typer.Option("--group", help="Default: --user.")] = None,
    working_directory: Annotated[
        Path | None,
        typer.Option("--working-directory", help="Default: the current directory."),
    ] = None,
    falcon_bin: Annotated[
        Path | None,
        typer.Option("--falcon", help="The falcon executable (default: this installation's)."),
    ] = None,
    spec: SpecOpt = None,
    out: OutOpt = None,
) -> None:
    """systemd unit (falcon.service): Restart=always, memory and file limits, sandboxing."""
    import sys

    from falcon_platform.config.settings import load_settings
    from falcon_platform.config.specfile import load_spec
    from falcon_platform.files import write_atomic
    from falcon_platform.render.systemd import UnitOptions, render_systemd

    settings = load_settings(profile=profile, env_file=env_file)
    loaded = load_spec(spec if spec is not None else settings.spec_path)
    workdir = (working_directory or Path.cwd()).resolve()
    home = settings.home if settings.home.is_absolute() else workdir / settings.home
    exe = (falcon_bin or Path(sys.executable).parent / "falcon").absolute()
    argv = [str(exe), "up"]
    if env_file is not None:
        argv += ["--env-file", str(env_file.resolve())]
    if profile is not None:
        argv += ["--profile", profile]
    if workers is not None:
        argv += ["--workers", str(workers)]
    if spec is not None:
        argv += ["--spec", str(spec.resolve())]
    limit = (
        settings.memory_limit_mb
        if settings.memory_limit_mb is not None
        else loaded.workers.memory_limit_mb
    )
    options = UnitOptions(
        exec_start=argv,
        working_directory=workdir,
        home=home,
        workers=workers or settings.worker_count,
        memory_limit_mb=limit,
        shutdown_grace_s=settings.shutdown_grace_s,
        user=user,
        group=group,
    )
    files = render_systemd(options)
    if out is None:
        for text in files.values():
            typer.echo(text, nl=False)
        return
    stderr = Console(stderr=True, highlight=False)
    for name, text in files.items():
        write_atomic(out / name, text)
        stderr.print(f"wrote {out / name}")
