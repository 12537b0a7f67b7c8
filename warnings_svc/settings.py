"""The service's one `Settings`: an optional TOML file, overridden by the environment, validated once."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    ValidationError,
    field_validator,
    model_validator,
)

from risk_zoning.io.database import DATA_DIR_VARIABLE, default_data_dir
from risk_zoning.io.tomlfile import read_toml

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

# Environment variable -> setting. The environment wins over the file.
ENVIRONMENT: dict[str, str] = {
    "DATABASE_URL": "database_url",
    DATA_DIR_VARIABLE: "data_dir",
    "WARNINGS_SVC_HOST": "host",
    "WARNINGS_SVC_PORT": "port",
    "WARNINGS_SVC_WEB_WORKERS": "web_workers",
    "WARNINGS_SVC_ACCESS_LOG": "access_log",
    "WARNINGS_SVC_WRITES_FIRST": "writes_first",
}
_INTEGER_KEYS = frozenset({"port", "web_workers"})
_BOOLEAN_KEYS = frozenset({"access_log", "writes_first"})
_BOOLEAN_WORDS = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}
MAX_WEB_WORKERS = 64


class SettingsError(Exception):
    """Unusable configuration; `str()` is one line naming the source (file or variable) and the problem."""

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class ScoringSettings(BaseModel):
    """How forecast runs become proposals (table `[scoring]`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A TOML file overriding any subset of the national criteria (warnings_svc/config/criteria.toml).
    criteria_file: Path | None = None
    # The admin level a warning's areas are named at: district by default, since town outlines are approximate.
    area_level: Literal["city", "district", "town"] = "district"
    min_probability: Annotated[float, Field(gt=0, le=1)] = 0.3
    min_fraction_exposed: Annotated[float, Field(ge=0, le=1)] = 0.05
    min_exposed_population: Annotated[int, Field(ge=0)] = 500
    max_vertices: Annotated[int, Field(ge=4, le=10_000)] = 100
    min_polygon_area_km2: Annotated[float, Field(ge=0)] = 1.0
    expiry_margin_h: Annotated[float, Field(ge=0, le=72)] = 0.0
    workers: Annotated[int, Field(ge=1, le=32)] = 1
    # A Dask scheduler ("tcp://host:8786") to score grids tile by tile on many hosts; None scores in-process.
    dask_scheduler: Annotated[str, Field(pattern=r"^(tcp|tls|inproc)://\S+$")] | None = None
    # How long to wait for that scheduler to answer before a run is left for a retry (and `score` exits 2).
    dask_connect_timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    tile: Annotated[int, Field(ge=16, le=4096)] = 256  # cells per tile side on the Dask path
    inbox_poll_seconds: Annotated[float, Field(gt=0, le=3600)] = 5.0
    # The largest forecast upload (POST /api/v1/runs), all its files together; streamed to disk, not memory.
    max_upload_mib: Annotated[int, Field(ge=1, le=65536)] = 2048


class WarningSettings(BaseModel):
    """Who issues warnings and how they are approved, signed and audited (table `[warnings]`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The issuer as CAP and GB/T 35965.1 name it; the sender code follows the national pattern (6-digit admin
    # code + 416 + 00000) and is derived, not confirmed, for Wuhai.
    sender: Annotated[str, Field(strict=True, pattern=r"^[^\s,&<]+$")] = "wuhai@weather.example.cn"
    sender_code: Annotated[str, Field(strict=True, pattern=r"^\d{14}$")] = "15030041600000"
    issuer_name: Annotated[str, Field(strict=True, min_length=1, max_length=40)] = "乌海市气象台"
    issuer_name_en: Annotated[str, Field(strict=True, min_length=1, max_length=80)] = (
        "Wuhai Meteorological Observatory"
    )
    contact: Annotated[str, Field(strict=True, min_length=1)] | None = None
    # Levels nobody may approve alone (their author never approves them); all four for the strictest rule.
    two_person_levels: tuple[Literal["blue", "yellow", "orange", "red"], ...] = ("orange", "red")
    # The public base URL (https://warnings.example.cn) written as each CAP message's <web>; None leaves it out.
    public_url: Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$")] | None = None
    # XML-DSig signing of every CAP message: a PEM private key and its PEM certificate, both or neither.
    signing_key_file: Path | None = None
    signing_cert_file: Path | None = None
    # SMS segments the full SMS text may take (UCS2: 70 characters in one, 67 per segment beyond); the text
    # is shortened to fit (area summary, brief guidance), and approval is refused when it cannot be.
    sms_segments: Annotated[int, Field(strict=True, ge=1, le=10)] = 3
    # A secret (a file of at least 32 bytes) that makes the audit hash chain an HMAC chain.
    audit_key_file: Path | None = None

    @model_validator(mode="after")
    def _key_and_certificate(self) -> WarningSettings:
        if (self.signing_key_file is None) != (self.signing_cert_file is None):
            raise ValueError("signing_key_file and signing_cert_file go together")
        return self


class SmsEndpointSettings(BaseModel):
    """One SMSC the SMS channel sends through over SMPP v3.4 (an array of tables `[[dispatch.sms]]`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Annotated[str, Field(strict=True, pattern=r"^[a-z][a-z0-9_-]{0,39}$")] = "smsc"
    host: Annotated[str, Field(strict=True, min_length=1)]
    port: Annotated[int, Field(strict=True, ge=1, le=65535)]
    system_id: Annotated[str, Field(strict=True, min_length=1, max_length=15)]
    # The bind password: inline for a test SMSC, or in a file (kept out of the configuration) for a real one.
    password: Annotated[str, Field(strict=True, max_length=8)] = ""
    password_file: Path | None = None
    system_type: Annotated[str, Field(strict=True, max_length=12)] = ""
    source_addr: Annotated[str, Field(strict=True, pattern=r"^[0-9A-Za-z+]{1,20}$")] = "12121"
    binds: Annotated[int, Field(strict=True, ge=1, le=32)] = 2
    window: Annotated[int, Field(strict=True, ge=1, le=1000)] = 50  # outstanding submit_sm per bind
    segment_method: Literal["udh", "sar", "payload"] = "udh"
    # The SMSC's contracted rate in submit_sm (segments) a second; 0: no limit of our own.
    rate_per_s: Annotated[float, Field(ge=0)] = 0.0
    enquire_link_interval_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    response_timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0

    @model_validator(mode="after")
    def _one_password(self) -> SmsEndpointSettings:
        if self.password and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        return self


Level = Literal["blue", "yellow", "orange", "red"]
ALL_LEVELS: tuple[Level, ...] = ("blue", "yellow", "orange", "red")
TargetName = Annotated[str, Field(strict=True, pattern=r"^[a-z][a-z0-9_-]{0,39}$")]


class MqttTargetSettings(BaseModel):
    """One MQTT broker whose terminals (loudspeakers, displays) get the warnings of their area (an array of
    tables `[[dispatch.mqtt]]`): retained on `{topic_prefix}/alerts/{area_code}`, acknowledged on
    `{topic_prefix}/ack/{terminal_id}` (channels.mqtt.terminals)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: TargetName = "terminals"
    url: Annotated[str, Field(strict=True, pattern=r"^mqtt://[^/\s:]+(:[0-9]{1,5})?/?$")]
    topic_prefix: Annotated[str, Field(strict=True, pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")] = "wuhai"
    levels: tuple[Level, ...] = ALL_LEVELS  # the warning levels put out on this broker
    publish_timeout_s: Annotated[float, Field(gt=0, le=300)] = 5.0
    # the service's client id (persistent session): unique per service on the broker; "" = warnings-svc-{name}
    client_id: Annotated[str, Field(strict=True, pattern=r"^[A-Za-z0-9_.-]{0,64}$")] = ""
    username: Annotated[str, Field(strict=True, max_length=200)] = ""
    password_file: Path | None = None  # the broker password, kept out of the configuration

    def password(self) -> str:
        """The broker password, read from `password_file` ("" without one)."""
        if self.password_file is None:
            return ""
        try:
            return self.password_file.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise SettingsError(self.password_file, f"cannot read password_file: {e.strerror or e}") from e


# no user:password@ and no query: a route shows on /readyz and in the API, and secrets go in token files
HttpRoute = Annotated[str, Field(strict=True, pattern=r"^https?://[^/\s@?#]+(/[^\s?#]*)?$")]


class _BearerSettings(BaseModel):
    """The bearer token a target issued us, inline (a test peer) or in a file kept out of the configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    token: Annotated[str, Field(strict=True, max_length=400)] = ""
    token_file: Path | None = None

    @model_validator(mode="after")
    def _one_token(self) -> _BearerSettings:
        if self.token and self.token_file is not None:
            raise ValueError("give token or token_file, not both")
        return self

    def bearer(self) -> str:
        """The token, read from `token_file` when one is named."""
        if self.token_file is None:
            return self.token
        try:
            return self.token_file.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise SettingsError(self.token_file, f"cannot read token_file: {e.strerror or e}") from e


class _HttpTargetSettings(_BearerSettings):
    """A target reached over HTTP: its routes (primary first; the last known-good is tried first)."""

    name: TargetName
    routes: Annotated[tuple[HttpRoute, ...], Field(min_length=1, max_length=8)]
    levels: tuple[Level, ...] = ALL_LEVELS
    request_timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    poll_interval_s: Annotated[float, Field(gt=0, le=3600)] = 5.0  # progress reports asked for this often


class RadioTvTargetSettings(_BearerSettings):
    """A radio or TV broadcaster's newsroom (`[[dispatch.radio_tv]]`): the insertion script and crawl line
    over HTTP, airing confirmed by a one-time link to this service (`warnings.public_url` is needed)."""

    name: TargetName
    url: HttpRoute
    levels: tuple[Level, ...] = ("orange", "red")
    # the share of the areas' people who watch or listen: a confirmed airing counts as this share, an estimate
    audience_share: Annotated[float, Field(gt=0, le=1)]
    request_timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0


class AreaSmsTargetSettings(_HttpTargetSettings):
    """One mobile operator's area SMS gateway (`[[dispatch.area_sms]]`): the warning's one-segment text to
    every handset in the warned areas (docs/channels/operator-area-sms.md)."""

    levels: tuple[Level, ...] = ("orange", "red")
    # this operator's handsets per resident (subscriptions per person x its share), for the handsets expected
    # before approval; none: the console shows the people in the areas only
    handsets_per_person: Annotated[float, Field(gt=0, le=5)] | None = None


class CellBroadcastTargetSettings(BaseModel):
    """One cell broadcast centre over the Osmocom ECBE REST API (`[[dispatch.cell_broadcast]]`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: TargetName
    routes: Annotated[tuple[HttpRoute, ...], Field(min_length=1, max_length=8)]
    levels: tuple[Level, ...] = ("orange", "red")
    cbe_name: Annotated[str, Field(strict=True, min_length=1, max_length=64)] = "wuhai-warnings"
    # the share of people a cell broadcast is estimated to reach (it returns no receipts): channels.cbs.ecbe
    reach_share: Annotated[float, Field(gt=0, le=1)] = 0.9
    request_timeout_s: Annotated[float, Field(gt=0, le=300)] = 15.0


class BroadcastPlatformTargetSettings(_HttpTargetSettings):
    """The county emergency broadcast platform (`[[dispatch.broadcast_platform]]`): the spoken script, its
    audio and the display line to the loudspeakers and displays it runs (docs/channels/emergency-broadcast-platform.md)."""


AREA_CHANNELS = ("mqtt", "area_sms", "cell_broadcast", "broadcast_platform", "radio_tv")


class DispatchSettings(BaseModel):
    """How issued warnings are fanned out and delivered (table `[dispatch]`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Channels every issued version fans out on; deliveries wait in the outbox until a dispatcher serves them.
    channels: tuple[Literal["sms"], ...] = ("sms",)
    # Run a dispatcher inside `warnings-svc serve`; more run as `warnings-svc dispatch` on any host.
    embedded: bool = True
    # deliveries a sender takes at once (a chunk it expands, or ready ones it claims) and sends together
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 500
    batches_in_flight: Annotated[int, Field(ge=1, le=64)] = 4  # per endpoint
    lease_s: Annotated[float, Field(ge=1, le=3600)] = 60.0  # a dead dispatcher's deliveries return after this
    max_attempts: Annotated[int, Field(ge=1, le=1000)] = 12
    retry_base_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    retry_cap_s: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    breaker_failures: Annotated[int, Field(ge=1, le=1000)] = 3  # failed batches in a row that open a circuit
    breaker_cool_down_s: Annotated[float, Field(gt=0, le=3600)] = 2.0
    breaker_max_cool_down_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    # people per fan-out transaction of a dispatcher without endpoints; one with endpoints has each sender
    # expand at most a batch (`batch_size`) for itself
    expand_chunk: Annotated[int, Field(ge=1, le=100_000)] = 10_000
    first_chunk: Annotated[int, Field(ge=1, le=100_000)] = (
        500  # the first one is small: first messages go at once
    )
    poll_s: Annotated[float, Field(gt=0, le=60)] = 1.0  # look at the queue this often even without a NOTIFY
    sms: tuple[SmsEndpointSettings, ...] = ()
    mqtt: tuple[MqttTargetSettings, ...] = ()
    area_sms: tuple[AreaSmsTargetSettings, ...] = ()
    cell_broadcast: tuple[CellBroadcastTargetSettings, ...] = ()
    broadcast_platform: tuple[BroadcastPlatformTargetSettings, ...] = ()
    radio_tv: tuple[RadioTvTargetSettings, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> DispatchSettings:
        if self.retry_cap_s < self.retry_base_s:
            raise ValueError("retry_cap_s must be at least retry_base_s")
        if self.breaker_max_cool_down_s < self.breaker_cool_down_s:
            raise ValueError("breaker_max_cool_down_s must be at least breaker_cool_down_s")
        names = [e.name for e in self.sms]
        if len(names) != len(set(names)):
            raise ValueError(f"sms endpoint names must be unique (got {', '.join(names)})")
        for channel in AREA_CHANNELS:
            targets = [t.name for t in getattr(self, channel)]
            if len(targets) != len(set(targets)):
                raise ValueError(f"{channel} target names must be unique (got {', '.join(targets)})")
        return self

    def area_targets(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """Every configured target of the area channels: (channel, name, levels)."""
        return [
            (channel, t.name, tuple(t.levels)) for channel in AREA_CHANNELS for t in getattr(self, channel)
        ]


class SmtpSettings(BaseModel):
    """The mail server partner emails go through (`[partners.smtp]`); no host: no email subscriptions."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    host: Annotated[str, Field(strict=True, min_length=1, max_length=253)]
    port: Annotated[int, Field(strict=True, ge=1, le=65535)] = 25
    sender: Annotated[str, Field(strict=True, pattern=r"^[^@\s<>]{1,64}@[^@\s<>]{1,255}$")]
    username: Annotated[str, Field(strict=True, max_length=200)] = ""
    password_file: Path | None = None
    starttls: Annotated[bool, Field(strict=True)] = False  # STARTTLS after connecting (a real server: true)
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 30.0

    def password(self) -> str:
        """The SMTP password, read from `password_file` ("" without one)."""
        if self.password_file is None:
            return ""
        try:
            return self.password_file.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise SettingsError(self.password_file, f"cannot read password_file: {e.strerror or e}") from e


# Standard Webhooks' schedule: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h
WEBHOOK_SCHEDULE_S: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)


class PartnerSettings(BaseModel):
    """Partners' subscriptions and how their deliveries are made (table `[partners]`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Webhook endpoints on private, loopback or link-local addresses are refused unless inside one of these
    # networks (SSRF guard); checked when a subscription is made and again at every attempt.
    allow_private: tuple[IPvAnyNetwork, ...] = ()
    webhook_timeout_s: Annotated[float, Field(gt=0, le=120)] = 15.0
    # delays before each attempt, from the first; the last repeats until the warning expires
    retry_schedule_s: Annotated[tuple[Annotated[float, Field(ge=0, le=86_400)], ...], Field(min_length=1)] = (
        WEBHOOK_SCHEDULE_S
    )
    # how long a rotated-out webhook secret still signs, beside the new one
    rotation_overlap_s: Annotated[float, Field(ge=0, le=30 * 86_400)] = 86_400.0
    concurrency: Annotated[int, Field(ge=1, le=1000)] = 64  # deliveries in flight per dispatcher
    smtp: SmtpSettings | None = None
    # the `[[dispatch.mqtt]]` broker partner topics are published on, and their prefix:
    # {topic_prefix}/{subscription address}; none: no MQTT subscriptions
    mqtt_broker: TargetName | None = None
    mqtt_topic_prefix: Annotated[str, Field(strict=True, pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")] = (
        "wuhai/partners"
    )


_DEFAULT_DEADLINES: dict[Level, float] = {"orange": 30.0, "red": 10.0}
AckStep = Literal["again", "deputy", "leader", "call_list"]


class AcknowledgementSettings(BaseModel):
    """Acknowledgement deadlines (叫应) for high-level warnings and their escalation (`[acknowledgements]`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # the levels whose responsible people must acknowledge, and the minutes each level gives them per step
    deadline_min: dict[Level, Annotated[float, Field(gt=0, le=1440)]] = Field(
        default_factory=lambda: _DEFAULT_DEADLINES.copy()
    )
    # what happens at each passed deadline, in order (the duty contact was called first)
    steps: tuple[AckStep, ...] = ("again", "deputy", "leader", "call_list")
    # the number people text their reply to ("" : the SMS endpoint's source address)
    reply_number: Annotated[str, Field(strict=True, pattern=r"^[0-9]{0,20}$")] = ""
    check_interval_s: Annotated[float, Field(gt=0, le=600)] = 5.0


_DEFAULT_CHECKPOINTS: dict[Level, tuple[int, ...]] = {
    # the first checkpoint is the plan's operational one; each later one gives the next rung of the ladder
    # (one rung per checkpoint missed), so every rung of a level's default ladder can be reached
    "red": (10, 15, 20, 30),
    "orange": (30, 40, 50),
    "yellow": (60,),
    "blue": (60,),
}
EscalationAction = Literal["area_sms_again", "cell_broadcast", "loudspeakers_again", "more_relayers"]
_DEFAULT_LADDERS: dict[Level, tuple[EscalationAction, ...]] = {
    "red": ("area_sms_again", "cell_broadcast", "loudspeakers_again", "more_relayers"),
    "orange": ("area_sms_again", "loudspeakers_again", "more_relayers"),
    "yellow": ("more_relayers",),
    "blue": (),
}


class EscalationSettings(BaseModel):
    """What happens when a checkpoint finds a warning below the target (`[coverage.escalation]`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # automatic: each step is applied at once; one_click: proposed to the duty officer, who applies it
    mode: Literal["automatic", "one_click"] = "one_click"
    ladders: dict[Level, tuple[EscalationAction, ...]] = Field(
        default_factory=lambda: _DEFAULT_LADDERS.copy()
    )


class CoverageSettings(BaseModel):
    """How public coverage is measured and held to the target (`[coverage]`, docs/coverage.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    target: Annotated[float, Field(gt=0, le=1)] = 0.95  # the climate plan's indicator for 2025
    # minutes after issue at which coverage is held to the target, per level (snapshots are stored at 10 and
    # 30 minutes whatever the level: the operational figures)
    checkpoints_min: dict[Level, tuple[Annotated[int, Field(ge=1, le=1440)], ...]] = Field(
        default_factory=lambda: _DEFAULT_CHECKPOINTS.copy()
    )
    # how channels that do not identify people combine in an area: independent (1 - prod(1 - c)), maximum
    # (complete overlap: a lower bound) or sum (no overlap: an upper bound, capped at 1)
    overlap: Literal["independent", "maximum", "sum"] = "independent"
    # mobile handsets per resident, for operator area SMS reports in handsets (all operators together; used
    # when the [[dispatch.area_sms]] targets do not give their own handsets_per_person)
    handsets_per_person: Annotated[float, Field(gt=0, le=5)] = 1.2
    # share of an area's residents within earshot of the emergency broadcast platform's terminals when all of
    # them played (the platform reports terminals, not people)
    platform_audience_share: Annotated[float, Field(gt=0, le=1)] = 0.6
    # the time series while a warning is live: a snapshot this often
    snapshot_interval_s: Annotated[float, Field(ge=1, le=3600)] = 60.0
    escalation: EscalationSettings = Field(default_factory=EscalationSettings)

    @field_validator("checkpoints_min", mode="after")
    @classmethod
    def _in_order(cls, value: dict[Level, tuple[int, ...]]) -> dict[Level, tuple[int, ...]]:
        for level, minutes in value.items():
            if list(minutes) != sorted(set(minutes)):
                raise ValueError(
                    f"{level}: give the minutes in increasing order, each once (got {list(minutes)})"
                )
        return value


class Settings(BaseModel):
    """Everything the service reads from its configuration. Unknown keys are errors, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # None: start an embedded PostgreSQL in `data_dir/postgres`.
    database_url: Annotated[str, Field(strict=True, min_length=1)] | None = None
    data_dir: Path = Field(default_factory=default_data_dir)
    host: Annotated[str, Field(strict=True, min_length=1)] = "127.0.0.1"
    port: Annotated[int, Field(strict=True, ge=1, le=65535)] = 8080
    # Web worker processes listening on host:port together (SO_REUSEPORT); see warnings_svc.web.workers.
    web_workers: Annotated[int, Field(strict=True, ge=1, le=MAX_WEB_WORKERS)] = 1
    # One log line per request. Behind a reverse proxy that logs them, turning it off buys about a third more
    # requests a second under load (bench/README.md, the public side under load).
    access_log: Annotated[bool, Field(strict=True)] = True
    # Once up, each serving process lowers the priority of its thread that reads requests (Linux, nice +10),
    # so that warning writes and PostgreSQL go first when the CPUs are busy (warnings_svc.web.write_lane).
    writes_first: Annotated[bool, Field(strict=True)] = True
    # Reverse proxies whose X-Forwarded-For is believed (addresses or networks): the login limits then count
    # failures per client, not per proxy (warnings_svc.web.client_address).
    trusted_proxies: tuple[IPvAnyNetwork, ...] = ()
    region: Annotated[str, Field(strict=True, pattern=r"^[a-z][a-z0-9_-]*$")] = "wuhai"
    log_level: LogLevel = "INFO"
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)
    warnings: WarningSettings = Field(default_factory=WarningSettings)
    dispatch: DispatchSettings = Field(default_factory=DispatchSettings)
    partners: PartnerSettings = Field(default_factory=PartnerSettings)
    acknowledgements: AcknowledgementSettings = Field(default_factory=AcknowledgementSettings)
    coverage: CoverageSettings = Field(default_factory=CoverageSettings)

    @model_validator(mode="after")
    def _links_to_here(self) -> Settings:
        if self.dispatch.radio_tv and self.warnings.public_url is None:
            raise ValueError(
                "dispatch.radio_tv needs warnings.public_url: broadcasters confirm airing by a link to it"
            )
        broker = self.partners.mqtt_broker
        if broker is not None:
            target = next((t for t in self.dispatch.mqtt if t.name == broker), None)
            if target is None:
                raise ValueError(f"partners.mqtt_broker {broker!r} is not a [[dispatch.mqtt]] target")
            ours, theirs = self.partners.mqtt_topic_prefix + "/", target.topic_prefix + "/"
            # a partner's topic ({ours}{address}) must never be a terminal's ({theirs}alerts/..., {theirs}ack/...)
            if theirs.startswith(ours) or ours.startswith((theirs + "alerts/", theirs + "ack/")):
                raise ValueError(
                    f"partners.mqtt_topic_prefix {self.partners.mqtt_topic_prefix!r} overlaps the terminals' topics "
                    f"under {target.topic_prefix!r} on broker {broker!r}: choose a prefix apart from them"
                )
        return self

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand_user(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


def load_settings(
    path: str | Path | None, env: Mapping[str, str], overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Settings from the TOML file at `path` (optional), then `env` (e.g. `os.environ`), then `overrides`.

    Later sources win. `overrides` are command-line options, keyed by setting name. A relative `data_dir` in
    the file is taken relative to the file's folder, so a config file and its data can move together. Every
    problem raises `SettingsError` naming the file, variable or option, and the field.
    """
    return load_settings_with_sources(path, env, overrides)[0]


def load_settings_with_sources(
    path: str | Path | None, env: Mapping[str, str], overrides: Mapping[str, Any] | None = None
) -> tuple[Settings, dict[str, str]]:
    """`load_settings`, and where each top-level setting that is not a default came from.

    The sources map a setting's name to the file's path, `environment variable NAME` or `option --name`.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if path is not None:
        path = Path(path)
        for key, value in read_toml(path, SettingsError).items():
            if key not in Settings.model_fields:
                raise SettingsError(path, f"unknown key '{key}'{_did_you_mean(key)}")
            if key == "data_dir" and isinstance(value, str) and not Path(value).expanduser().is_absolute():
                value = str(path.parent / value)
            if isinstance(value, dict) and key in _FILE_KEYS:
                value = _relative_to(path.parent, value, _FILE_KEYS[key])
            if key == "dispatch" and isinstance(value, dict):
                # the key files of endpoints and targets, relative to the configuration file
                value = value | {
                    table: [
                        _relative_to(path.parent, e, _ENDPOINT_FILE_KEYS) if isinstance(e, dict) else e
                        for e in value[table]
                    ]
                    for table in ("sms", "mqtt", "area_sms", "broadcast_platform", "radio_tv")
                    if isinstance(value.get(table), list)
                }
            values[key] = value
            sources[key] = str(path)
    for variable, key in ENVIRONMENT.items():
        raw = env.get(variable)
        if raw is None or raw == "":
            continue
        values[key] = _from_environment(variable, key, raw)
        sources[key] = f"environment variable {variable}"
    for key, value in (overrides or {}).items():
        values[key] = value
        sources[key] = f"option --{key.replace('_', '-')}"
    try:
        return Settings.model_validate(values), sources
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        top = str(first["loc"][0]) if first["loc"] else ""
        source = sources.get(top, str(path) if path is not None else "settings")
        problem = first["msg"]
        # a URL may carry a password, a token or password is one: never echo them (nor a table holding one)
        secret = key == "database_url" or any(str(part) in ("token", "password") for part in first["loc"])
        if "input" in first and not secret and not isinstance(first["input"], dict):
            problem += f" (got {_shorten(repr(first['input']))})"
        raise SettingsError(source, f"{key}: {problem}" if key else problem) from e


def database_source(settings: Settings, sources: Mapping[str, str]) -> str:
    """Which setting chose the database `settings` open: `database_url`'s source, else `data_dir`'s."""
    if settings.database_url:
        return sources.get("database_url", "settings")
    return sources.get("data_dir", f"the default; {DATA_DIR_VARIABLE} or --data-dir choose another")


# Paths inside tables that, when relative, are taken relative to the settings file's folder.
_FILE_KEYS: dict[str, tuple[str, ...]] = {
    "scoring": ("criteria_file",),
    "warnings": ("signing_key_file", "signing_cert_file", "audit_key_file"),
}
_ENDPOINT_FILE_KEYS = ("password_file", "token_file")


def _relative_to(folder: Path, table: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    out = dict(table)
    for key in keys:
        if isinstance(out.get(key), str):
            given = Path(out[key]).expanduser()
            out[key] = str(given if given.is_absolute() else folder / given)
    return out


def _from_environment(variable: str, key: str, raw: str) -> Any:
    """Environment values are text; convert the few that are not, naming the variable when that fails."""
    if key in _INTEGER_KEYS:
        try:
            return int(raw)
        except ValueError as e:
            raise SettingsError(f"environment variable {variable}", f"{key}: not an integer ({raw!r})") from e
    if key in _BOOLEAN_KEYS:
        if raw.strip().lower() not in _BOOLEAN_WORDS:
            raise SettingsError(f"environment variable {variable}", f"{key}: not true or false ({raw!r})")
        return _BOOLEAN_WORDS[raw.strip().lower()]
    return raw


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _did_you_mean(key: str) -> str:
    close = difflib.get_close_matches(key, Settings.model_fields, n=1)
    return f" (did you mean '{close[0]}'?)" if close else f"; known keys: {', '.join(Settings.model_fields)}"
