"""Device profiles: the per-operation figures every estimate is made from.

The default file ships beside this module with the source of each figure; a user
passes their own with --device-profile (same keys; any subset overrides the default)."""

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

DEFAULT = Path(__file__).with_name("devices.json")
REQUIRED = {
    "loihi": ("name", "cores_per_chip", "neurons_per_core", "synapses_per_core", "synop_energy_pj", "synop_time_ns",
              "neuron_update_energy_pj", "neuron_update_time_ns", "spike_energy_pj", "barrier_time_us"),
    "jetson": ("name", "peak_flops", "efficiency", "launch_overhead_us", "power_w"),
    "link": ("name", "bandwidth_bytes_per_s", "latency_us", "energy_pj_per_byte"),
}


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
            override = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"Cannot read device profile {path}: {exc}") from None
        if not isinstance(override, dict):
            raise InputError(f"Device profile {path} must be a JSON object with loihi/jetson/links keys.")
        data = _merge(data, override)
    jetson = jetson or data["defaults"]["jetson"]
    link = link or data["defaults"]["link"]
    for kind, key in (("jetson", jetson), ("links", link)):
        if key not in data[kind]:
            raise InputError(f"No {kind} profile `{key}`; known: {', '.join(data[kind])}.")
    required = {"loihi": (data["loihi"], REQUIRED["loihi"]), "jetson": (data["jetson"][jetson], REQUIRED["jetson"]),
                "link": (data["links"][link], REQUIRED["link"])}
    for kind, (entry, keys) in required.items():
        missing = [k for k in keys if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise InputError(f"Device profile: the {kind} entry lacks {', '.join(missing)} (see {DEFAULT}).")
    return DeviceProfile(data["loihi"], data["jetson"][jetson], data["links"][link], {"jetson": jetson, "link": link})
