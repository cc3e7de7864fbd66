"""Broker state machine throughput: commands encoded, decoded and applied per second.

One process, one core, no Raft: this is the cost the state machine adds to
every committed entry. Phases, each timed on its own:

- ``encode``: Publish commands to entry bytes;
- ``decode``: entry bytes back to commands;
- ``apply``: ``Broker.apply`` of the encoded entries (decode included), into a
  queue with one consumer group, as a replica would;
- ``deliver+ack``: ``apply`` of Deliver entries leasing ``--batch`` messages
  each, then of one Ack entry per message (building and encoding those
  commands included);
- ``snapshot``: serialize and restore the state holding all the messages.

Options: ``--messages`` (default 200,000), ``--size`` body bytes (default 100),
``--keys`` to give every message an idempotency key, ``--producer`` to publish
as an idempotent producer.
"""

from __future__ import annotations

import argparse
import time

from herald.broker import (
    Ack,
    Broker,
    CreateQueue,
    Deliver,
    Deliveries,
    Publish,
    Subscribe,
    decode,
    encode,
)
from herald.raft import Entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=100, help="body bytes")
    parser.add_argument("--batch", type=int, default=100, help="messages leased per Deliver")
    parser.add_argument("--keys", action="store_true", help="give each message a message id")
    parser.add_argument("--producer", action="store_true", help="publish as idempotent producer")
    args = parser.parse_args()

    n = args.messages
    body = b"x" * args.size
    commands = [
        Publish(
            "bench",
            body,
            (("kind", "bench"),),
            f"message-{i:010d}" if args.keys else None,
            "producer-1" if args.producer else None,
            i + 1 if args.producer else 0,
            time=1_000 + i,
        )
        for i in range(n)
    ]

    started = time.perf_counter()
    payloads = [encode(command) for command in commands]
    encode_s = time.perf_counter() - started

    started = time.perf_counter()
    for payload in payloads:
        decode(payload)
    decode_s = time.perf_counter() - started

    broker = Broker()
    index = 0

    def apply(data: bytes) -> object:
        nonlocal index
        index += 1
        return broker.apply(Entry(1, index, data))

    apply(encode(CreateQueue("bench", time=1)))
    apply(encode(Subscribe("bench", "workers", "w1", time=2)))
    entries = [Entry(1, index + 1 + i, payload) for i, payload in enumerate(payloads)]
    index += n
    started = time.perf_counter()
    for entry in entries:
        broker.apply(entry)
    apply_s = time.perf_counter() - started

    started = time.perf_counter()
    blob = broker.snapshot()
    snap_s = time.perf_counter() - started
    started = time.perf_counter()
    Broker().restore(blob, index)
    restore_s = time.perf_counter() - started

    now = 1_000 + n
    started = time.perf_counter()
    delivered = 0
    while delivered < n:
        result = apply(encode(Deliver("bench", "workers", "w1", args.batch, time=now)))
        assert isinstance(result, Deliveries)
        for delivery in result.deliveries:
            apply(encode(Ack("bench", "workers", delivery.sequence, delivery.token, time=now)))
        delivered += len(result.deliveries)
        now += 1
    deliver_s = time.perf_counter() - started

    stats = broker.stats("bench")

    entry_bytes = sum(len(p) for p in payloads) / n
    print(f"messages={n} body={args.size}B keys={args.keys} producer={args.producer}")
    print(f"entry_bytes={entry_bytes:.0f} (publish, encoded)")
    print(f"encode_per_second={n / encode_s:,.0f}")
    print(f"decode_per_second={n / decode_s:,.0f}")
    print(f"apply_publish_per_second={n / apply_s:,.0f} (decode included)")
    print(
        f"deliver_ack_messages_per_second={n / deliver_s:,.0f} "
        f"(batch {args.batch}; {n // args.batch + n} entries)"
    )
    print(
        f"acked={stats.counters.acked} published={stats.counters.published} "
        f"retained_after={broker.stats('bench').length}"
    )
    print(
        f"snapshot_of_{n}_messages: dump={snap_s:.3f}s restore={restore_s:.3f}s bytes={len(blob):,}"
    )


if __name__ == "__main__":
    main()
