"""In-tree fakes for Falcon's narrow interfaces (clock, stores, metrics source, journal).

Each fake lives beside the interface it stands in for and is used by pure-logic
tests; integration tests use the real thing.
"""

from falcon_platform.testing.clock import FakeClock
from falcon_platform.testing.sli import FakeSLISource

__all__ = ["FakeClock", "FakeSLISource"]
