"""Record a history against a queue and check it with `herald check`.

This is the smallest complete example of the history format: a producer that
publishes three messages (one with an unknown outcome, retried) and an
at-least-once consumer that processes and acks them. Point the same recorder
at any broker -- the checker reads only what clients saw.

    python examples/record_history.py > history.jsonl
    herald check history.jsonl
"""

from __future__ import annotations

import sys

from herald.check.history import Recorder, write_history


def main() -> None:
    history = Recorder()
    queue, group, mode = "orders", "billing", "at_least_once"
    # The producer: every attempt is recorded; a timeout is "info" (unknown).
    for number, outcome in ((1, "ok"), (2, "info"), (2, "ok"), (3, "ok")):
        history.invoke("producer", "publish", {"queue": queue, "id": f"order-{number}"})
        if outcome == "ok":
            history.ok("producer", "publish", {"seq": number})
        else:
            history.info("producer", "publish", {})
    # The consumer: a delivery, the side effect, the ack -- for each message.
    for number in (1, 2, 3):
        message_id = f"order-{number}"
        history.invoke("consumer", "deliver", {"queue": queue, "group": group, "mode": mode})
        history.ok(
            "consumer",
            "deliver",
            {"messages": [{"id": message_id, "seq": number, "attempt": 1, "redelivery": False}]},
        )
        effect = {"queue": queue, "group": group, "id": message_id, "mode": mode}
        history.invoke("consumer", "effect", effect)
        history.ok("consumer", "effect", {})
        history.invoke("consumer", "ack", {"queue": queue, "group": group, "id": message_id})
        history.ok("consumer", "ack", {})
    write_history(history.ops, sys.stdout)


if __name__ == "__main__":
    main()
