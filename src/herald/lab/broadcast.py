"""Reliable broadcast with two delivery orders: causal (vector clocks) and FIFO only.

Both share the transport half: the origin sends each message to every peer and
retransmits it until that peer acknowledges; receivers acknowledge every copy
and drop duplicates by (origin, sequence number). So every message reaches
every live node exactly once, whatever the network loses, duplicates or
reorders. They differ only in when a received message may be *delivered* (handed
to the application); until then it waits in the hold-back queue.

- :class:`FifoBroadcast` delivers each origin's messages in the order it sent
  them, and nothing more: a reply can be delivered before the message it
  answers, if they came from different nodes.
- :class:`CausalBroadcast` stamps each message with a vector clock: entry j
  counts the messages from node j its sender had delivered (its own included)
  when it sent it. A message from j is delivered once it is the next one from
  j and everything it depended on from the others has been delivered
  (Birman, Schiper and Stephenson's condition).

A node delivers its own messages the moment it broadcasts them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CausalBroadcast", "FifoBroadcast", "Packet", "ReliableBroadcast"]

MessageId = tuple[int, int]  # (origin, sequence number from 1)


@dataclass(frozen=True, slots=True)
class Packet:
    src: int
    dst: int
    kind: str  # "data" or "ack"
    origin: int
    seq: int
    clock: tuple[int, ...] = ()  # a vector clock indexed like ``nodes`` (causal only)
    payload: str = ""


class ReliableBroadcast:
    """The shared transport; subclasses say when a received message is deliverable."""

    def __init__(self, node_id: int, nodes: tuple[int, ...], resend: int = 5) -> None:
        self.id = node_id
        self.nodes = tuple(sorted(nodes))
        self.position = {node: index for index, node in enumerate(self.nodes)}
        self.resend = resend
        self.delivered_count = [0] * len(self.nodes)  # per origin, in delivery order
        self.seen: set[MessageId] = set()
        self.held_back: list[Packet] = []
        self.unacked: dict[tuple[int, int], Packet] = {}  # (peer, seq) -> packet
        self.deliveries: list[tuple[MessageId, str]] = []
        self.outbox: list[Packet] = []
        self._sent = 0
        self._ticks = 0

    # -- the core's interface --------------------------------------------------------------------

    def broadcast(self, payload: str) -> MessageId:
        """Send ``payload`` to everyone (and deliver it here at once); returns its id."""
        self._sent += 1
        clock = self._stamp()
        me = self.position[self.id]
        self.delivered_count[me] += 1
        self.seen.add((self.id, self._sent))
        for peer in self.nodes:
            if peer != self.id:
                packet = Packet(self.id, peer, "data", self.id, self._sent, clock, payload)
                self.unacked[(peer, self._sent)] = packet
                self.outbox.append(packet)
        return (self.id, self._sent)

    def step(self, packet: Packet) -> None:
        if packet.kind == "ack":
            self.unacked.pop((packet.src, packet.seq), None)
            return
        self.outbox.append(Packet(self.id, packet.src, "ack", packet.origin, packet.seq))
        key = (packet.origin, packet.seq)
        if key in self.seen:
            return
        self.seen.add(key)
        self.held_back.append(packet)
        self._deliver_ready()

    def tick(self) -> None:
        self._ticks += 1
        if self._ticks % self.resend == 0:
            for key in sorted(self.unacked):
                self.outbox.append(self.unacked[key])

    def take_messages(self) -> list[Packet]:
        out, self.outbox = self.outbox, []
        return out

    def take_deliveries(self) -> list[tuple[MessageId, str]]:
        out, self.deliveries = self.deliveries, []
        return out

    # -- delivery ---------------------------------------------------------------------------------

    def _deliver_ready(self) -> None:
        progress = True
        while progress:
            progress = False
            for packet in self.held_back:
                if self._deliverable(packet):
                    self.held_back.remove(packet)
                    self.delivered_count[self.position[packet.origin]] += 1
                    self.deliveries.append(((packet.origin, packet.seq), packet.payload))
                    progress = True
                    break

    def _stamp(self) -> tuple[int, ...]:
        return ()

    def _deliverable(self, packet: Packet) -> bool:
        raise NotImplementedError


class FifoBroadcast(ReliableBroadcast):
    """Per-origin order only."""

    def _deliverable(self, packet: Packet) -> bool:
        return packet.seq == self.delivered_count[self.position[packet.origin]] + 1


class CausalBroadcast(ReliableBroadcast):
    """Causal order, by vector clocks."""

    def _stamp(self) -> tuple[int, ...]:
        clock = list(self.delivered_count)
        clock[self.position[self.id]] = self._sent
        return tuple(clock)

    def _deliverable(self, packet: Packet) -> bool:
        origin = self.position[packet.origin]
        have = self.delivered_count
        for index, count in enumerate(packet.clock):
            if index == origin:
                if count != have[index] + 1:
                    return False
            elif count > have[index]:
                return False
        return True
