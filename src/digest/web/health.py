"""For whoever watches the service: `GET /healthz` (a small JSON; 503 when the database is
unreachable, the daemon's heartbeat is stale or the outbox's worker is stopped) and
`GET /metrics` (Prometheus' text format, read from the database at each scrape, through
prometheus_client, and this process's outbox counters)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from digest.daemon import metrics
from digest.daemon.health import health_report
from digest.errors import StorageError
from digest.storage import utcnow
from digest.web.site import Site

# A monitor wants this moment's answer, never a cache's.
NO_STORE = {"Cache-Control": "no-store"}


def routes(site: Site) -> list[Route]:
    def healthz(request: Request) -> Response:
        report, healthy = health_report(site.db, site.settings, utcnow())
        outbox = site.outbox.stats()  # (starts a dead worker again when jobs wait)
        report["outbox"] = outbox
        healthy = healthy and outbox["worker"] != "stopped"
        if not healthy:
            report["status"] = "unhealthy"
        return JSONResponse(report, status_code=200 if healthy else 503, headers=NO_STORE)

    def scrape(request: Request) -> Response:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_FromDatabase(site))
        registry.register(_Outbox(site))
        try:
            body = generate_latest(registry)
        except StorageError as e:
            return PlainTextResponse(f"database unreachable: {e}\n", 503, headers=NO_STORE)
        return Response(body, headers={**NO_STORE, "Content-Type": CONTENT_TYPE_LATEST})

    return [Route("/healthz", healthz), Route("/metrics", scrape)]


class _FromDatabase(Collector):
    """prometheus_client's custom collector: daemon.metrics' numbers as metric families."""

    def __init__(self, site: Site) -> None:
        self.site = site

    def collect(self) -> Iterator[Metric]:
        for metric in metrics.collect(self.site.db, utcnow()):
            names = metric.label_names
            kind = CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily
            family = kind(metric.name, metric.help, labels=names)
            for labels, value in metric.values.items():
                family.add_metric([dict(labels)[n] for n in names], value)
            yield family


class _Outbox(Collector):
    """This process's outbox: sign-ups and emails done, failed or turned away, restarts of
    its worker, jobs waiting (counters since the process started)."""

    def __init__(self, site: Site) -> None:
        self.site = site

    def collect(self) -> Iterator[Metric]:
        stats = self.site.outbox.stats()
        jobs = CounterMetricFamily(
            "digest_outbox_jobs",
            "Outbox jobs (sign-ups, emails) by outcome: sent (an email), failed, dropped (full)",
            labels=["outcome"],
        )
        for outcome in ("sent", "failed", "dropped"):
            jobs.add_metric([outcome], stats[outcome])
        yield jobs
        yield CounterMetricFamily(
            "digest_outbox_restarts",
            "Times the outbox's worker was started again",
            stats["restarts"],
        )
        yield GaugeMetricFamily("digest_outbox_queued", "Outbox jobs waiting", stats["queued"])
