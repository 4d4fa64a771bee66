"""Settings from the environment (``SHARING_AUDIT_*``), with the embedded defaults."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///sharing-audit.db"


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
    policy: str | None = Field(default=None, description="policy pack name or YAML path")


def settings() -> Settings:
    return Settings()
