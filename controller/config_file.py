"""The controller's config file: YAML with a `placement` section.

    placement:
      strategy: load          # load, binpack, round-robin or spread
      spread_over: zone       # the node label the spread strategy uses
      weights: {cpu: 1, memory: 1, accelerator: 1, link: 0.5, jobs: 1}
      start_time: 10s         # rule out nodes due to disconnect sooner

Every key is optional; unknown keys are errors.
"""

from pathlib import Path

import msgspec
import yaml

from controller.placement import PlacementConfig


class ConfigFileError(ValueError):
    """A config file that cannot be read, with the path in its message."""


class ConfigFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    placement: PlacementConfig = msgspec.field(default_factory=PlacementConfig)


def load_config_file(path: str | Path) -> ConfigFile:
    try:
        with open(path, encoding="utf-8") as stream:
            data = yaml.safe_load(stream)
    except OSError as exc:
        raise ConfigFileError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{path} is not valid YAML: {exc}") from None
    try:
        return msgspec.convert(data or {}, ConfigFile)
    except msgspec.ValidationError as exc:
        raise ConfigFileError(f"{path}: {exc}") from None
