"""The worker's environment knobs, read once at start-up (documented in docs/worker.md)."""

import os
from dataclasses import dataclass, field
from pathlib import Path

from audioextract.urlguard import GuardPolicy

TASK_ENV = "AUDIOEXTRACT_TASK"
VOLUMES_ROOT_ENV = "AUDIOEXTRACT_VOLUMES_ROOT"
TEMP_DIR_ENV = "AUDIOEXTRACT_TEMP_DIR"
RW_TIMEOUT_ENV = "AUDIOEXTRACT_RW_TIMEOUT_SECONDS"
MAX_REDIRECTS_ENV = "AUDIOEXTRACT_MAX_REDIRECTS"
MAX_INPUT_BYTES_ENV = "AUDIOEXTRACT_MAX_INPUT_BYTES"
MAX_MEDIA_SECONDS_ENV = "AUDIOEXTRACT_MAX_MEDIA_SECONDS"
MAX_OUTPUT_BYTES_ENV = "AUDIOEXTRACT_MAX_OUTPUT_BYTES"
CA_FILE_ENV = "AUDIOEXTRACT_CA_FILE"
PROGRESS_INTERVAL_ENV = "AUDIOEXTRACT_PROGRESS_INTERVAL_SECONDS"

DEFAULT_VOLUMES_ROOT = "/volumes"
DEFAULT_TEMP_DIR = "/tmp"  # noqa: S108 - in the pod this is an emptyDir mounted there
DEFAULT_RW_TIMEOUT = 30.0
DEFAULT_MAX_REDIRECTS = 5
DEFAULT_MAX_INPUT_BYTES = 20 * 1024**3
DEFAULT_MAX_MEDIA_SECONDS = 6 * 3600.0
DEFAULT_PROGRESS_INTERVAL = 5.0


def _number(env: dict[str, str] | os._Environ[str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"{name}: {raw!r} is not a number") from exc
    if value < 0:
        raise ValueError(f"{name}: must not be negative")
    return value


@dataclass(frozen=True)
class WorkerSettings:
    """Limits, timeouts and paths; tests build one directly."""

    volumes_root: Path = Path(DEFAULT_VOLUMES_ROOT)
    temp_dir: Path = Path(DEFAULT_TEMP_DIR)
    rw_timeout: float = DEFAULT_RW_TIMEOUT
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
    max_media_seconds: float = DEFAULT_MAX_MEDIA_SECONDS
    # None: derived per job from the format and max_media_seconds (worker/limits.py).
    max_output_bytes: int | None = None
    ca_file: str | None = None
    progress_interval: float = DEFAULT_PROGRESS_INTERVAL
    policy: GuardPolicy = field(default_factory=GuardPolicy)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "WorkerSettings":
        """Settings from the environment; raises ValueError naming a bad variable."""
        env = os.environ if environ is None else environ
        return cls(
            volumes_root=Path(env.get(VOLUMES_ROOT_ENV) or DEFAULT_VOLUMES_ROOT),
            temp_dir=Path(env.get(TEMP_DIR_ENV) or DEFAULT_TEMP_DIR),
            rw_timeout=_number(env, RW_TIMEOUT_ENV, DEFAULT_RW_TIMEOUT) or DEFAULT_RW_TIMEOUT,
            max_redirects=int(_number(env, MAX_REDIRECTS_ENV, DEFAULT_MAX_REDIRECTS)),
            max_input_bytes=int(_number(env, MAX_INPUT_BYTES_ENV, DEFAULT_MAX_INPUT_BYTES)),
            max_media_seconds=_number(env, MAX_MEDIA_SECONDS_ENV, DEFAULT_MAX_MEDIA_SECONDS),
            max_output_bytes=int(_number(env, MAX_OUTPUT_BYTES_ENV, 0)) or None,
            ca_file=env.get(CA_FILE_ENV) or None,
            progress_interval=_number(env, PROGRESS_INTERVAL_ENV, DEFAULT_PROGRESS_INTERVAL),
            policy=GuardPolicy.from_env(dict(env)),
        )
