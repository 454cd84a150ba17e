"""Taking a guest out of a room when their invitation is revoked (after the revocation commits).

The guest's socket, on whichever worker, is told `revoked` and closes with 4403; the others hear
`peer_left` with reason `revoked` and close their connection to it; the guest's place, and with
it any resume, is gone. A guest whose socket took its place while the revocation committed
checks again on its own (realtime.handler), so nobody stays by the race. Pub/sub is at most once:
should the `revoked` message be lost, the guest is still out of the room's list, its resume and
any new join are refused, and every other page drops its media on `peer_left` (kept in the log).
"""

from __future__ import annotations

import uuid

from realtime import messages as m
from realtime.bus import RoomBus
from realtime.rooms import Rooms


async def remove_guest(rooms: Rooms, bus: RoomBus, appointment_id: uuid.UUID, invitation_id: uuid.UUID) -> None:
    room, user = str(appointment_id), f"guest:{invitation_id}"
    for peer_id, peer in (await rooms.peers(room)).items():
        if peer.user != user:
            continue
        # First the guest (while its place exists), then its place, then the room.
        revoked = {"type": "revoked", "peer": peer_id}
        await bus.publish(room, "\n" + m.encode({"from": "server", "to": peer_id, "msg": revoked}))
        await rooms.remove(room, peer_id)
        left = {"type": "peer_left", "peer": peer_id, "reason": "revoked"}
        await rooms.append_and_publish(
            room, "server", None, m.encode(left), m.encode({"from": "server", "to": None, "msg": left})
        )
