"""Settings from the environment (``SHARING_AUDIT_*``), with the embedded defaults."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from pipeline.policy.schools import Controller, parse_school_settings
from pipeline.transport.kafka import KafkaConfig

DEFAULT_DATABASE_URL = "sqlite:///sharing-audit.db"
#: The levels SHARING_AUDIT_LOG_LEVEL may name.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


#: The origin of a new log unless SHARING_AUDIT_LOG_ORIGIN names it: the URL prefix ``serve``
#: serves the log under, as C2SP tlog-tiles recommends. A deployment should name its own
#: (its domain and ``/log``), so that checkpoints of two schools' logs never mix. A log
#: that has signed checkpoints keeps the origin they carry (:mod:`pipeline.ledger.log.origin`):
#: those signed under the old default, ``sharing-audit.localhost/ledger``, keep it.
DEFAULT_LOG_ORIGIN = "sharing-audit.localhost/log"


#: The default maximum merge delay, in checkpoint periods (see :attr:`Settings.merge_delay`).
MERGE_DELAY_CHECKPOINTS = 6


class WitnessSetting(BaseModel):
    """A witness the log sends its checkpoints to: where, and its verifier key."""

    url: str
    vkey: str


class Settings(BaseSettings):
    """Everything configurable; the command line's options override these."""

    model_config = SettingsConfigDict(env_prefix="SHARING_AUDIT_", extra="ignore")

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL, description="SQLAlchemy URL of the ledger database"
    )
    pseudonym_key: str | None = Field(
        default=None,
        description=(
            "secret for pupil pseudonyms (hex, 32 bytes or more); when unset, a key is "
            "generated on first use and kept beside a SQLite database"
        ),
    )
    log_key: str | None = Field(
        default=None,
        description=(
            "the log's Ed25519 signing key (the 32-byte private key, 64 hex characters); "
            "when unset, one is generated on first use and kept beside a SQLite database"
        ),
    )
    log_origin: str | None = Field(
        default=None,
        description=(
            "the log's name in its checkpoints and verifier key: set it to your own (the "
            "domain and path the log is served under, such as audit.westfields.sch.uk/log) "
            "before the first checkpoint; unset, the one the log's checkpoints carry, else "
            f"{DEFAULT_LOG_ORIGIN}"
        ),
    )
    log_vkey: str | None = Field(
        default=None,
        description=(
            "the log's verifier key (the line sharing-audit log vkey prints), for a sender "
            "to check the log's receipts by; unset, emit uses the key of the ledger --db names"
        ),
    )
    checkpoint_seconds: float = Field(
        default=10.0,
        gt=0,
        description="the worker signs a checkpoint this often, when the tree has grown",
    )
    max_merge_delay_seconds: float | None = Field(
        default=None,
        gt=0,
        description=(
            "the log's maximum merge delay (MMD): every entry it gave a receipt for is in a "
            "signed checkpoint within this many seconds of the receipt's time; unset, "
            f"{MERGE_DELAY_CHECKPOINTS} times SHARING_AUDIT_CHECKPOINT_SECONDS"
        ),
    )
    checkpoint_dir: str | None = Field(
        default=None, description="a folder the latest checkpoint is written to, for others to copy"
    )
    witnesses: list[WitnessSetting] = Field(
        default_factory=list,
        description='witnesses new checkpoints are sent to (JSON: [{"url": ..., "vkey": ...}])',
    )
    witness_deadline_seconds: float = Field(
        default=5.0,
        gt=0,
        description="seconds a witness has to answer each checkpoint sent to it, all told",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="the worker serves Prometheus metrics on this port (unset: it serves none)",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="the address the worker's metrics are served on (0.0.0.0: every one)",
    )
    witness_quorum: int = Field(
        default=0, ge=0, description="cosignatures a checkpoint needs to be served as current"
    )
    witness_key: str | None = Field(
        default=None, description="a witness's own Ed25519 key (64 hex characters)"
    )
    witness_name: str = Field(
        default="sharing-audit-witness.localhost", description="a witness's name in its key"
    )
    policy: str | None = Field(default=None, description="policy pack name or YAML path")
    schools: str | None = Field(
        default=None, description="the register of schools (YAML): each decided by its own pack"
    )
    school_name: str | None = Field(
        default=None,
        description="with no register of schools, the school's name, for subject-access reports",
    )
    school_address: str | None = Field(
        default=None, description="with no register, the school's postal address (likewise)"
    )
    school_dpo_contact: str | None = Field(
        default=None,
        description="with no register, how a parent reaches the school's DPO (likewise)",
    )
    broker: str | None = Field(
        default=None, description="Kafka bootstrap HOST:PORT (the embedded broker when unset)"
    )
    partitions: int = Field(default=4, ge=1, description="partitions of each topic created")
    replication: int = Field(default=1, ge=1, description="replicas of each topic created")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: str | None = Field(
        default=None, description="CA bundle to verify the brokers' certificates"
    )
    batch_size: int = Field(default=500, ge=1, description="records an agent takes per batch")
    log_level: str | None = Field(
        default=None,
        description="log level (default: INFO for the worker, WARNING for other commands)",
    )

    @field_validator("log_level")
    @classmethod
    def _a_log_level(cls, value: str | None) -> str | None:
        """One of the standard library's levels, in any case: any other word would stop
        every command at start, in logging's own traceback."""
        if value is None:
            return None
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"a log level is one of {', '.join(LOG_LEVELS)}")
        return value.upper()

    webhook_urls: list[str] = Field(
        default_factory=list,
        description='where new high-severity incidents are POSTed (JSON list: ["https://..."])',
    )
    webhook_secret: str | None = Field(
        default=None, description="HMAC secret shared with the webhook receivers"
    )
    notify_email_to: list[str] = Field(
        default_factory=list, description="who is emailed new high-severity incidents (JSON list)"
    )
    smtp_host: str | None = Field(default=None, description="SMTP relay for incident emails")
    smtp_port: int = 587
    smtp_from: str = "sharing-audit@localhost"
    smtp_tls: Literal["starttls", "ssl", "none"] = Field(
        default="starttls",
        description=(
            "starttls (port 587), ssl (SMTPS, port 465), or none (a relay on this host "
            "only: no password is sent then); TLS verifies the server's certificate"
        ),
    )
    smtp_ca_file: str | None = Field(
        default=None, description="CA bundle to verify the SMTP server (else the system's)"
    )
    smtp_username: str | None = None
    smtp_password: str | None = None
    desk_url: str = Field(
        default="http://127.0.0.1:8000", description="the breach desk's address, for links"
    )
    catch_up_patience: float = Field(
        default=10.0,
        ge=0,
        description=(
            "how long at most a batch of sharing events waits for the lifecycle topic to "
            "catch up while a backlog drains (0: never waits)"
        ),
    )
    alert_hold_seconds: float = Field(
        default=60.0,
        ge=0,
        description=(
            "how long a breach or review alert waits before it is sent, so that a late fact "
            "that clears the decision (a consent recorded just after the referral) does not "
            "raise it"
        ),
    )

    @property
    def merge_delay(self) -> float:
        """The MMD the log promises, in seconds: auditors hold it to this (``audit
        receipts``). A receipted entry waits for the next checkpoint, up to
        ``checkpoint_seconds`` after its batch commits; by default the promise is
        :data:`MERGE_DELAY_CHECKPOINTS` checkpoint periods (60 s at the default 10 s), which
        leaves room for a slow batch, a worker restarted by its supervisor and a witness
        round, while a log that breaks it is still caught within a minute. Derived from
        the checkpoint period unless set, so that signing less often never silently breaks
        the promise."""
        if self.max_merge_delay_seconds is not None:
            return self.max_merge_delay_seconds
        return MERGE_DELAY_CHECKPOINTS * self.checkpoint_seconds

    def school(self) -> Controller | None:
        """The deployment's one school, named to parents in subject-access reports where
        no register of schools names it; None when none of its settings is given.
        :class:`~pipeline.policy.pack.PackError` naming each variable given wrongly."""
        given = {
            "SHARING_AUDIT_SCHOOL_NAME": self.school_name,
            "SHARING_AUDIT_SCHOOL_ADDRESS": self.school_address,
            "SHARING_AUDIT_SCHOOL_DPO_CONTACT": self.school_dpo_contact,
        }
        return parse_school_settings(given, "settings")

    def kafka(self, broker: str | None = None) -> KafkaConfig:
        """The Kafka connection for ``broker`` (else the configured one)."""
        bootstrap = broker or self.broker
        if not bootstrap:
            raise ValueError("no broker given")
        return KafkaConfig(
            bootstrap=bootstrap,
            partitions=self.partitions,
            replication=self.replication,
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=self.kafka_sasl_password,
            ssl_cafile=self.kafka_ssl_cafile,
        )


class SettingsInvalid(ValueError):
    """A ``SHARING_AUDIT_*`` variable set to what its setting cannot take."""


def settings() -> Settings:
    """The settings from the environment; :class:`SettingsInvalid` naming each variable
    that is wrong and why (never its value: it may be a password or a key)."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsInvalid("; ".join(_said(error) for error in exc.errors())) from None
    except SettingsError as exc:
        field = re.search(r'field "(\w+)"', str(exc))
        name = _variable(field[1]) if field else "a SHARING_AUDIT_ variable"
        raise SettingsInvalid(f"{name} is not the JSON its setting takes") from None


def _variable(field: str) -> str:
    return f"{Settings.model_config.get('env_prefix', '')}{field}".upper()


def _said(error: Any) -> str:
    """One of pydantic's errors as the variable it concerns and what is wrong."""
    field, *within = (str(part) for part in error["loc"])
    where = f" (at {'.'.join(within)})" if within else ""
    return f"{_variable(field)}{where}: {error['msg']}"
