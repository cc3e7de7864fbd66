"""Memory of the broker's deduplication state: bytes per idempotency key, per producer.

Measured with tracemalloc, as the difference between two brokers that applied
the same publishes, one with message ids (keys) and one without, after a purge
(which drops the messages but keeps the key index). So the figure is what the
replicated index costs per key on every replica, including the key string
itself, its expiry and its place in the expiry queue, at the given key length.

The producer figure is the same measure for idempotent producers: N producers
publishing ``--window`` messages each, against the same publishes anonymously.
"""

from __future__ import annotations

import argparse
import gc
import tracemalloc

from herald.broker import Broker, CreateQueue, Publish, PurgeQueue, QueueOptions, decode, encode


def measure(commands: list[bytes], options: QueueOptions) -> int:
    """Bytes held by a broker after applying ``commands`` to a fresh queue and a purge."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    broker = Broker()
    broker.execute(CreateQueue("q", options, time=1))
    for data in commands:
        broker.execute(decode(data))  # as a replica does: the strings come from the entry
    broker.execute(PurgeQueue("q", time=len(commands) + 2))  # before any key expires
    assert broker.stats("q").idempotency_keys in (0, len(commands))
    del data
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    held = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert broker.stats("q").length == 0
    return held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--key-length", type=int, default=16, help="characters per message id")
    parser.add_argument("--producers", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=5, help="receipts kept per producer")
    args = parser.parse_args()

    options = QueueOptions(producer_window=args.window)
    width = args.key_length
    keyed = [
        encode(Publish("q", b"x", message_id=f"{i:0{width}d}"[-width:], time=1 + i))
        for i in range(args.keys)
    ]
    plain = [encode(Publish("q", b"x", time=1 + i)) for i in range(args.keys)]
    per_key = (measure(keyed, options) - measure(plain, options)) / args.keys
    print(f"keys={args.keys} key_length={width} ttl={options.dedup_ttl}us")
    print(f"bytes_per_key={per_key:.0f}")

    produced = [
        encode(Publish("q", b"x", producer=f"producer-{p:06d}", producer_sequence=n, time=1))
        for p in range(args.producers)
        for n in range(1, args.window + 1)
    ]
    anonymous = [encode(Publish("q", b"x", time=1)) for _ in produced]
    per_producer = (measure(produced, options) - measure(anonymous, options)) / args.producers
    print(f"producers={args.producers} window={args.window}")
    print(f"bytes_per_producer={per_producer:.0f}")


if __name__ == "__main__":
    main()
