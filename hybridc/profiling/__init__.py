"""What a split costs: Loihi activity and energy, Jetson MACs and latency, bytes on the
link, from the compiled artifacts and from spikes actually produced by a run."""

from .devices import DeviceProfile, load_profile
from .report import Profile, profile_build

__all__ = ["DeviceProfile", "load_profile", "Profile", "profile_build"]
