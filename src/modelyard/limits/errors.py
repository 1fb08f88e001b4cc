"""What a counter store raises instead of answering.

`CounterStoreUnavailable` is the fail-closed path: the store could not be asked (Redis down,
slow or refusing), so nothing may be admitted. It is a 503 in the gateway's error tree, and not
retryable on another deployment, which shares the same store. `ReservationSettled` is a caller
bug: a reservation id that was settled is being reserved again.
"""

from __future__ import annotations

from modelyard.errors import ServiceUnavailable


class CounterStoreUnavailable(ServiceUnavailable):
    code = "counter_store_unavailable"
    retryable = False


class ReservationSettled(ValueError):
    def __init__(self, reservation_id: str) -> None:
        super().__init__(f"reservation '{reservation_id}' was already settled")
        self.reservation_id = reservation_id
