"""Device profiles: the per-operation figures every estimate is made from.

The default file ships beside this module with the source of each figure; a user
passes their own with --device-profile (same keys; any subset overrides the default)."""

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

DEFAULT = Path(__file__).with_name("devices.json")


@dataclass
class DeviceProfile:
    loihi: dict
    jetson: dict  # the chosen Jetson
    link: dict  # the chosen link
    names: dict  # {"jetson": key, "link": key}


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_profile(path=None, jetson=None, link=None) -> DeviceProfile:
    data = json.loads(DEFAULT.read_text())
    if path is not None:
        try:
            data = _merge(data, json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"Cannot read device profile {path}: {exc}") from None
    jetson = jetson or data["defaults"]["jetson"]
    link = link or data["defaults"]["link"]
    for kind, key in (("jetson", jetson), ("links", link)):
        if key not in data[kind]:
            raise InputError(f"No {kind} profile `{key}`; known: {', '.join(data[kind])}.")
    return DeviceProfile(data["loihi"], data["jetson"][jetson], data["links"][link], {"jetson": jetson, "link": link})
