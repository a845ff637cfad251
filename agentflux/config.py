"""Settings: argument > environment variable > default, validated with messages that name the setting.

Nothing here reads the environment at import time; :meth:`Settings.from_env` is the one place
that does, and it is called by the CLI (or explicitly by a user).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping


class ConfigError(ValueError):
    """A setting is missing or wrong. The message names the setting and how to fix it."""


class SecretStr(str):
    """A string that does not print itself (passwords, webhook secrets)."""

    def __repr__(self) -> str:
        return "SecretStr('**********')" if self else "SecretStr('')"

    def get_secret_value(self) -> str:
        return str.__str__(self)


@dataclass(frozen=True)
class Topics:
    """Kafka topic names and partition counts."""

    events: str = "agentflux.events"
    kpis: str = "agentflux.kpis"
    alerts: str = "agentflux.alerts"
    predictions: str = "agentflux.predictions"
    pool_commands: str = "agentflux.pool.commands"
    deadletter: str = "agentflux.deadletter"
    events_partitions: int = 4
    partitions: int = 1
    replication_factor: int = 1

    @classmethod
    def with_prefix(cls, prefix: str, **kw: Any) -> "Topics":
        """Topic names under another prefix (tests use one prefix per test)."""
        names = {f.name: getattr(cls, f.name).replace("agentflux", prefix, 1)
                 for f in dataclasses.fields(cls) if f.type == "str"}
        return cls(**{**names, **kw})


@dataclass(frozen=True)
class OtlpSettings:
    """OTLP span export (:mod:`agentflux.sinks.otlp`): on when an OTLP endpoint is set. The
    endpoint, headers, TLS, compression and timeout are the exporter's own
    ``OTEL_EXPORTER_OTLP_*`` variables; these are the rest, from the standard variables where
    there is one (``OTEL_EXPORTER_OTLP_PROTOCOL``, ``OTEL_TRACES_SAMPLER[_ARG]``,
    ``OTEL_BSP_*``)."""

    protocol: str = "grpc"  # or "http/protobuf"
    sample_ratio: float = 1.0  # share of traces kept, decided on the trace id
    keep_errors: bool = True  # error spans (and their session's root) are kept at any ratio
    max_queue_spans: int = 32_768
    max_export_batch: int = 512
    schedule_delay_s: float = 1.0
    session_idle_s: float = 30.0  # a session's invoke_agent root is exported once this quiet
    max_sessions: int = 10_000  # open roots kept; the least recently seen is exported beyond

    def __post_init__(self) -> None:
        if self.protocol not in ("grpc", "http/protobuf"):
            raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={self.protocol!r}: use grpc or "
                              "http/protobuf")
        if not 0.0 <= self.sample_ratio <= 1.0:
            raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG={self.sample_ratio!r}: the trace ratio "
                              "is 0..1 (e.g. 0.1 keeps one trace in ten)")
        for name, key in (("max_queue_spans", "OTEL_BSP_MAX_QUEUE_SIZE"),
                          ("max_export_batch", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
                          ("max_sessions", "AGENTFLUX_OTLP_MAX_SESSIONS")):
            if getattr(self, name) < 1:
                raise ConfigError(f"{key}={getattr(self, name)!r}: must be >= 1")
        if self.schedule_delay_s <= 0 or self.session_idle_s < 0:
            raise ConfigError("OTEL_BSP_SCHEDULE_DELAY must be > 0 ms and "
                              "AGENTFLUX_OTLP_SESSION_IDLE_S >= 0 s")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "OtlpSettings | None":
        """The export's settings, or None when no OTLP endpoint is set (or
        ``OTEL_SDK_DISABLED=true`` / ``OTEL_TRACES_EXPORTER=none``)."""
        if not (env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
            return None
        if (env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
                or env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none"):
            return None
        kw: dict[str, Any] = {}

        def num(key: str, conv: Any, scale: float = 1.0) -> Any:
            raw = env[key]
            try:
                return conv(conv(raw) * scale) if scale != 1.0 else conv(raw)
            except ValueError:
                raise ConfigError(f"{key}={raw!r} is not a valid {conv.__name__}: set it to "
                                  f"one, or unset {key} for the default") from None

        proto = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL")
        if proto:
            kw["protocol"] = proto.strip()
        sampler = (env.get("OTEL_TRACES_SAMPLER") or "").strip().lower()
        if sampler:
            base = sampler.removeprefix("parentbased_")
            if base == "always_on":
                kw["sample_ratio"] = 1.0
            elif base == "always_off":
                kw["sample_ratio"] = 0.0
            elif base == "traceidratio":
                kw["sample_ratio"] = (num("OTEL_TRACES_SAMPLER_ARG", float)
                                      if env.get("OTEL_TRACES_SAMPLER_ARG") else 1.0)
            else:
                raise ConfigError(f"OTEL_TRACES_SAMPLER={sampler!r}: use always_on, always_off "
                                  "or traceidratio (with OTEL_TRACES_SAMPLER_ARG=0..1)")
        if env.get("AGENTFLUX_OTLP_KEEP_ERRORS"):
            kw["keep_errors"] = env["AGENTFLUX_OTLP_KEEP_ERRORS"].strip().lower() not in (
                "0", "false", "no")
        for key, name, conv, scale in (
                ("OTEL_BSP_MAX_QUEUE_SIZE", "max_queue_spans", int, 1.0),
                ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "max_export_batch", int, 1.0),
                ("OTEL_BSP_SCHEDULE_DELAY", "schedule_delay_s", float, 1e-3),
                ("AGENTFLUX_OTLP_SESSION_IDLE_S", "session_idle_s", float, 1.0),
                ("AGENTFLUX_OTLP_MAX_SESSIONS", "max_sessions", int, 1.0)):
            if env.get(key):
                kw[name] = num(key, conv, scale)
        return cls(**kw)


def _state_dir() -> Path:
    return Path(os.environ.get("AGENTFLUX_HOME", Path.home() / ".cache" / "agentflux"))


@dataclass(frozen=True)
class Settings:
    """Everything a worker, emitter or CLI command needs. Frozen; build with ``replace``."""

    bootstrap_servers: str | None = None  # None: the local broker that `agentflux up` started
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    topics: Topics = field(default_factory=Topics)
    app_id: str = "agentflux"
    window_s: float = 10.0
    grace_s: float = 2.0
    # the KPI windows' dimensions (streams.windows): name always; agent, session, tool, cold
    # optional (a session's rows are most of the KPI rows where sessions are short)
    kpi_dimensions: tuple[str, ...] = ("name", "agent", "session", "tool", "cold", "resource")
    max_record_bytes: int = 4 * 1024 * 1024
    # event times further ahead of the wall clock are clamped for windowing (they still land)
    max_future_skew_s: float = 10.0
    # the history drops an event whose id was among the last N landed from its partition
    dedup_events: int = 1_000_000
    # a dead letter larger than this goes to the dead-letter topic by reference (source topic,
    # partition, offset; the history keeps the bytes): Kafka's default message limit is ~1 MB
    deadletter_max_bytes: int = 1_000_000
    # the history's root: a directory, or any filesystem pyarrow supports (s3://bucket/prefix)
    history_path: str = "agentflux-history"
    retention_days: float = 30.0
    # a worker's pending rows become segments at this many events or this age (freshness); the
    # worker holds up to two such batches (one being written): 40,000 keeps a backlog drain
    # under 500 MB of RSS (100,000: ~700 MB) at the same throughput
    segment_rows: int = 40_000
    segment_age_s: float = 1.0
    # the compactor: every interval, merge a partition-day's small segments (under
    # compact_target_rows) once there are compact_min_files of them; delete what a merged
    # segment hides compact_grace_s later (a query that listed it before still finds it)
    compact_interval_s: float = 30.0
    compact_min_files: int = 16
    compact_target_rows: int = 2_000_000
    compact_grace_s: float = 120.0
    # a replay worker (`agentflux replay`) lands into a new history and publishes nothing: the
    # KPI rows and dead letters it would publish are on the topics already
    replay: bool = False
    # failure patterns: a rules file merged over the packaged defaults (None: the defaults)
    failure_rules: str | None = None
    # alert delivery: Alertmanager's base URL (API v2), a webhook URL and its signing secrets
    # (Standard Webhooks; several, comma-separated, during a rotation), the re-send interval
    alertmanager_url: str | None = None
    webhook_url: str | None = None
    webhook_secrets: SecretStr | None = None
    alert_resend_s: float = 30.0
    # the closed loop: the key(s) that sign pool commands (HMAC-SHA256; several, comma-separated,
    # during a rotation: the first signs, any verifies; None: the autoscaler issues no commands
    # and a pool manager refuses to start), and the autoscaler's policy file (None: defaults)
    command_keys: SecretStr | None = None
    autoscaler_policy: str | None = None
    # OTLP span export (None: off; on when OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT is set)
    otlp: OtlpSettings | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    state_dir: Path = field(default_factory=_state_dir)

    def __post_init__(self) -> None:
        if self.window_s <= 0:
            raise ConfigError(f"window_s={self.window_s!r}: the KPI window must be > 0 seconds "
                              "(set AGENTFLUX_WINDOW_S, e.g. 10)")
        from agentflux.streams.windows import DIMENSIONS
        unknown = [d for d in self.kpi_dimensions if d not in DIMENSIONS]
        if unknown or "name" not in self.kpi_dimensions:
            raise ConfigError(f"kpi_dimensions={','.join(self.kpi_dimensions)!r}: give 'name' and "
                              f"any of {', '.join(DIMENSIONS[1:])}, comma-separated (set "
                              "AGENTFLUX_KPI_DIMENSIONS)")
        if self.grace_s < 0:
            raise ConfigError(f"grace_s={self.grace_s!r}: must be >= 0 (set AGENTFLUX_GRACE_S)")
        if self.security_protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
            raise ConfigError(f"KAFKA_SECURITY_PROTOCOL={self.security_protocol!r}: use one of "
                              "PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL")
        if self.security_protocol.startswith("SASL") and not self.sasl_mechanism:
            raise ConfigError("KAFKA_SASL_MECHANISM is required with a SASL security protocol "
                              "(PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
        for name, fix in (("metrics_port", "--metrics-port or AGENTFLUX_METRICS_PORT"),
                          ("web_port", "--web-port or AGENTFLUX_WEB_PORT")):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ConfigError(f"{name}={port!r}: a TCP port is 0..65535 ({fix})")
        if self.webhook_url and not self.webhook_secrets:
            raise ConfigError("AGENTFLUX_WEBHOOK_URL is set but AGENTFLUX_WEBHOOK_SECRETS is not: "
                              "webhooks are always signed; set a secret (whsec_<base64>)")
        if self.alert_resend_s <= 0:
            raise ConfigError(f"alert_resend_s={self.alert_resend_s!r}: must be > 0 (set "
                              "AGENTFLUX_ALERT_RESEND_S, e.g. 30)")
        if self.retention_days <= 0:
            raise ConfigError(f"retention_days={self.retention_days!r}: must be > 0 "
                              "(set AGENTFLUX_RETENTION_DAYS, e.g. 30)")
        if self.max_future_skew_s < 0:
            raise ConfigError(f"max_future_skew_s={self.max_future_skew_s!r}: must be >= 0 "
                              "(set AGENTFLUX_MAX_FUTURE_SKEW_S, e.g. 10)")
        if self.dedup_events < 8:
            raise ConfigError(f"dedup_events={self.dedup_events!r}: the de-duplication horizon "
                              "must be >= 8 events (set AGENTFLUX_DEDUP_EVENTS, e.g. 1000000)")
        if self.deadletter_max_bytes < 0:
            raise ConfigError(f"deadletter_max_bytes={self.deadletter_max_bytes!r}: must be >= 0 "
                              "(set AGENTFLUX_DEADLETTER_MAX_BYTES)")
        if self.segment_rows < 1 or self.segment_age_s <= 0:
            raise ConfigError(f"segment_rows={self.segment_rows!r}, segment_age_s="
                              f"{self.segment_age_s!r}: both must be > 0 (set "
                              "AGENTFLUX_SEGMENT_ROWS / AGENTFLUX_SEGMENT_AGE_S)")
        if self.compact_min_files < 2 or self.compact_grace_s < 0:
            raise ConfigError(f"compact_min_files={self.compact_min_files!r} must be >= 2 and "
                              f"compact_grace_s={self.compact_grace_s!r} >= 0 (set "
                              "AGENTFLUX_COMPACT_MIN_FILES / AGENTFLUX_COMPACT_GRACE_S)")
        if self.max_record_bytes < 1024:
            raise ConfigError(f"max_record_bytes={self.max_record_bytes!r}: must be >= 1024")

    @property
    def log_dir(self) -> Path:
        """Where commands keep the logs of the processes they start (``AGENTFLUX_HOME/logs``)."""
        return self.state_dir / "logs"

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    def kafka_client_kwargs(self) -> dict[str, Any]:
        """Connection settings for aiokafka clients (bootstrap + security)."""
        if not self.bootstrap_servers:
            raise ConfigError("no Kafka broker configured: run `agentflux up` for a local one, "
                              "or set KAFKA_BOOTSTRAP_SERVERS=host:port")
        kw: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers,
                              "security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            kw.update(sasl_mechanism=self.sasl_mechanism,
                      sasl_plain_username=self.sasl_username,
                      sasl_plain_password=(self.sasl_password.get_secret_value()
                                           if self.sasl_password else None))
        if self.security_protocol in ("SSL", "SASL_SSL"):
            import ssl
            kw["ssl_context"] = ssl.create_default_context(cafile=self.ssl_cafile)
        return kw

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Settings from explicit ``overrides``, then ``env`` (default: os.environ), then defaults."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}

        def take(key: str, name: str, conv: Any = str) -> None:
            raw = env.get(key)
            if raw is None or raw == "":
                return
            try:
                values[name] = conv(raw)
            except ValueError:
                raise ConfigError(f"{key}={raw!r} is not a valid {conv.__name__}: set it to "
                                  f"one, or unset {key} for the default") from None

        take("KAFKA_BOOTSTRAP_SERVERS", "bootstrap_servers")
        take("KAFKA_SECURITY_PROTOCOL", "security_protocol")
        take("KAFKA_SASL_MECHANISM", "sasl_mechanism")
        take("KAFKA_SASL_USERNAME", "sasl_username")
        take("KAFKA_SASL_PASSWORD", "sasl_password", SecretStr)
        take("KAFKA_SSL_CAFILE", "ssl_cafile")
        take("AGENTFLUX_APP_ID", "app_id")
        take("AGENTFLUX_WINDOW_S", "window_s", float)
        take("AGENTFLUX_GRACE_S", "grace_s", float)
        take("AGENTFLUX_KPI_DIMENSIONS", "kpi_dimensions",
             lambda v: tuple(d.strip() for d in v.split(",") if d.strip()))
        take("AGENTFLUX_HISTORY", "history_path")
        take("AGENTFLUX_SEGMENT_ROWS", "segment_rows", int)
        take("AGENTFLUX_SEGMENT_AGE_S", "segment_age_s", float)
        take("AGENTFLUX_COMPACT_INTERVAL_S", "compact_interval_s", float)
        take("AGENTFLUX_COMPACT_MIN_FILES", "compact_min_files", int)
        take("AGENTFLUX_COMPACT_GRACE_S", "compact_grace_s", float)
        take("AGENTFLUX_RETENTION_DAYS", "retention_days", float)
        take("AGENTFLUX_MAX_FUTURE_SKEW_S", "max_future_skew_s", float)
        take("AGENTFLUX_DEDUP_EVENTS", "dedup_events", int)
        take("AGENTFLUX_DEADLETTER_MAX_BYTES", "deadletter_max_bytes", int)
        take("AGENTFLUX_METRICS_HOST", "metrics_host")
        take("AGENTFLUX_METRICS_PORT", "metrics_port", int)
        take("AGENTFLUX_WEB_HOST", "web_host")
        take("AGENTFLUX_WEB_PORT", "web_port", int)
        take("AGENTFLUX_HOME", "state_dir", Path)
        take("AGENTFLUX_REPLAY", "replay", lambda v: v == "1")
        take("AGENTFLUX_FAILURE_RULES", "failure_rules")
        take("AGENTFLUX_ALERTMANAGER_URL", "alertmanager_url")
        take("AGENTFLUX_WEBHOOK_URL", "webhook_url")
        take("AGENTFLUX_WEBHOOK_SECRETS", "webhook_secrets", SecretStr)
        take("AGENTFLUX_ALERT_RESEND_S", "alert_resend_s", float)
        take("AGENTFLUX_COMMAND_KEYS", "command_keys", SecretStr)
        take("AGENTFLUX_AUTOSCALER_POLICY", "autoscaler_policy")
        values["otlp"] = OtlpSettings.from_env(env)
        topic_kw: dict[str, Any] = {}
        for key, name, conv in (("AGENTFLUX_TOPIC_PREFIX", "prefix", str),
                                ("AGENTFLUX_EVENTS_PARTITIONS", "events_partitions", int),
                                ("AGENTFLUX_REPLICATION_FACTOR", "replication_factor", int)):
            if env.get(key):
                try:
                    topic_kw[name] = conv(env[key])
                except ValueError:
                    raise ConfigError(f"{key}={env[key]!r} is not a valid {conv.__name__}: set "
                                      f"it to one, or unset {key} for the default") from None
        if topic_kw:
            prefix = topic_kw.pop("prefix", "agentflux")
            values["topics"] = Topics.with_prefix(prefix, **topic_kw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
