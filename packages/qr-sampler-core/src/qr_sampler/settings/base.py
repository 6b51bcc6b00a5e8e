"""The settings base that core and every entropy source build their settings on.

All of them read the same dotenv file (``QR_ENV_FILE``, default ``.env``) and the
process environment, which wins over the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TypeVar

from pydantic import ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from qr_sampler.errors import ConfigValidationError

ENV_FILE_VARIABLE = "QR_ENV_FILE"
DEFAULT_ENV_FILE = ".env"
#: Where `qr-sampler profile` finds the profiles; read by no engine process.
DEPLOYMENTS_VARIABLE = "QR_DEPLOYMENTS_DIR"

_S = TypeVar("_S", bound="QRSettings")


# Values a template or a README holds where the real key goes.
_PLACEHOLDER = re.compile(
    r"<[^>]*>|\.\.\.|x+|.*(?:changeme|change-me|placeholder|your[-_]|example).*", re.IGNORECASE
)


def env_file_path() -> str:
    """The dotenv file every settings class reads.

    The default ``.env`` may be absent. A file named by ``QR_ENV_FILE`` must exist: a
    server started from the wrong folder would otherwise run on defaults without a word.
    """
    path = os.environ.get(ENV_FILE_VARIABLE)
    if path is None:
        return DEFAULT_ENV_FILE
    check_env_file(path, ENV_FILE_VARIABLE)
    return path


def check_env_file(path: str, named_by: str) -> None:
    """Raise ``ConfigValidationError`` unless ``path`` is a readable dotenv file."""
    where = f"{named_by}={path}"
    if os.path.isdir(path):
        raise ConfigValidationError(f"{where} is a directory; name the .env file in it")
    if not os.path.exists(path):
        relative = "" if os.path.isabs(path) else f" (relative to {os.getcwd()})"
        raise ConfigValidationError(f"{where}: no such file{relative}")


def is_placeholder(value: str) -> bool:
    """Whether a secret's value is template text (``<your-api-key>``) rather than a key."""
    return bool(_PLACEHOLDER.fullmatch(value))


class QRSettings(BaseSettings):
    """Base for ``QRSamplerConfig`` and for the settings of entropy sources.

    Subclasses set ``env_prefix``; fields listed in ``secret_fields`` are never
    shown unmasked by ``qr-sampler config``.
    """

    model_config = SettingsConfigDict(
        extra="ignore",
        frozen=True,
        validate_default=True,
        allow_inf_nan=False,
        env_file_encoding="utf-8",
    )

    secret_fields: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _secrets_are_not_placeholders(self) -> QRSettings:
        # Sent as it is, a placeholder fails at the server with a puzzling rejection.
        for field in sorted(self.secret_fields):
            value = getattr(self, field, None)
            if isinstance(value, str) and value and is_placeholder(value):
                name = f"{self.env_prefix_value()}{field}".upper()
                raise ValueError(
                    f"{name} is the placeholder {value!r}, not a key: give the real key "
                    f"(best in the shell at run time: {name}=...) or leave it empty for none"
                )
        return self

    @classmethod
    def load(cls: type[_S], env_file: str | None = None, **overrides: Any) -> _S:
        """Read the environment and the dotenv file; bad values raise ``ConfigValidationError``."""
        path = env_file if env_file is not None else env_file_path()
        try:
            # _env_file is BaseSettings' per-instance override of the dotenv path.
            return cls(_env_file=path, **overrides)  # type: ignore[call-arg]
        except ValidationError as exc:
            raise ConfigValidationError(
                describe_validation_error(
                    exc,
                    cls.env_prefix_value(),
                    upper=True,
                    secrets=cls.secret_fields,
                    fields=cls.model_fields,
                )
            ) from None

    @classmethod
    def from_assignments(cls: type[_S], assignments: Mapping[str, str]) -> _S:
        """Validate ``NAME=value`` assignments on their own, as a profile file stands.

        Every other field takes its default: explicit values win over the process
        environment, which must not make a profile pass or fail.
        """
        names = cls.env_names()
        values: dict[str, Any] = {
            field: info.get_default(call_default_factory=True)
            for field, info in cls.model_fields.items()
            if not info.is_required()
        }
        values.update({names[key]: value for key, value in assignments.items() if key in names})
        return cls.load(env_file=os.devnull, **values)

    @classmethod
    def env_prefix_value(cls) -> str:
        return str(cls.model_config.get("env_prefix", ""))

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Map every environment variable this class reads to its field name."""
        prefix = cls.env_prefix_value()
        return {f"{prefix}{name}".upper(): name for name in cls.model_fields}

    def redacted(self) -> dict[str, Any]:
        """The values with secrets masked, safe to print."""
        values = self.model_dump(mode="json")
        for name in self.secret_fields:
            value = values.get(name)
            values[name] = mask_secret("" if value is None else str(value))
        return values


def sendable_secret(value: str) -> str:
    """A key as a header or call metadata can carry it: printable ASCII (what HTTP and
    gRPC send) with no surrounding whitespace (a copy-paste accident); else ValueError."""
    if value and (value != value.strip() or not value.isascii() or not value.isprintable()):
        raise ValueError("must be printable ASCII without surrounding whitespace")
    return value


def mask_secret(value: str) -> str:
    """``****abcd`` for a set secret (a hint to tell keys apart), ``""`` for none."""
    if not value:
        return ""
    return "****" + value[-4:] if len(value) >= 12 else "****"


def describe_validation_error(
    exc: ValidationError,
    prefix: str,
    *,
    upper: bool,
    secrets: frozenset[str] = frozenset(),
    fields: Iterable[str] = (),
) -> str:
    """One line per problem, naming the variable or request key as the user wrote it."""

    def named(field: str) -> str:
        return f"{prefix}{field}".upper() if upper else f"{prefix}{field}"

    lines = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        if not field:  # a check across fields: its message names them, by field name
            message = error["msg"].removeprefix("Value error, ")
            for known in sorted(fields, key=len, reverse=True):
                message = re.sub(rf"(?<![\w.]){known}(?!\w)", named(known), message)
            lines.append(message)
            continue
        name = named(field)
        # A rejected secret is still a secret: never echo it back.
        shown = "" if field in secrets else f" (got {error.get('input')!r})"
        lines.append(f"{name}: {error['msg']}{shown}")
    return "; ".join(lines)
