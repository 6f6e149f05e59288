"""A fake WeCom for tests, demos and benchmarks.

It speaks WeCom's real /cgi-bin API paths and JSON shapes, keeps WeCom's rules (tokens expire,
a welcome code works once within 20 s, pair APIs without a relation answer 84061, limits answer
45009), and delivers callbacks encrypted exactly as WeCom does. A /_sim control API seeds the
corp, makes customers and guides act, injects faults and shows every call it received.
"""

from .api.dispatch import SIMULATED_APIS
from .api.tickets import jsapi_signature
from .app import create_simulator_app, run_simulator
from .config import SimulatorConfig
from .errors import ApiError, ControlError
from .keys import SIMULATOR_STATE
from .state import SimState

__all__ = [
    "SIMULATED_APIS",
    "SIMULATOR_STATE",
    "ApiError",
    "ControlError",
    "SimState",
    "SimulatorConfig",
    "create_simulator_app",
    "jsapi_signature",
    "run_simulator",
]
