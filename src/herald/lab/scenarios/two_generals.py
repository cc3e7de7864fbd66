"""Scenario ``two-generals``: no finite strategy makes disagreement impossible.

For every strategy of :mod:`herald.lab.generals` and every loss rate, two
measurements:

- **simulated**: ``trials`` runs on the simulator's network (latency plus
  jitter, independent loss per message), each judged by :func:`classify`;
- **exact**: the same cores driven in lockstep over every pattern of lost and
  delivered messages, weighting each by its probability, which gives the exact
  probability of each outcome and the expected number of messages. The exact
  figures show disagreement stays above zero even where the simulation is too
  short to see it (eight messengers at 10 % loss fail once in 10^8).

The simulation is also checked against the exact values (within five standard
errors), which guards the network, the harness and the computation alike.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from herald.lab.generals import (
    GENERAL_A,
    GENERAL_B,
    OUTCOMES,
    Courier,
    General,
    Strategy,
    classify,
    disagree,
    make_generals,
)
from herald.lab.harness import LabWorld
from herald.lab.result import Chart, Json, LabResult, Series, Table, Verdict
from herald.sim.network import NetworkProfile
from herald.sim.scheduler import MS

__all__ = ["ATTACK_ROUND", "LOSS_RATES", "STRATEGIES", "exact_outcomes", "run"]

NAME = "two-generals"
ATTACK_ROUND = 10
TICK = 10 * MS
LOSS_RATES = (0.1, 0.3, 0.5)
STRATEGIES = (
    *(Strategy("messengers", k) for k in (1, 2, 3, 5, 8)),
    *(Strategy("acks", m) for m in (1, 2, 3)),
    *(Strategy("chain", d) for d in (2, 3, 4, 6)),
)
#: How far (in standard errors, plus two trials' worth) a simulated rate may
#: stray from the exact one before the lab calls it a discrepancy.
TOLERANCE_SIGMAS = 5.0

Maker = Callable[[Strategy, int], tuple[General, General]]


def exact_outcomes(
    strategy: Strategy, loss: float, make: Maker = make_generals
) -> tuple[dict[str, float], float]:
    """Exact outcome probabilities and expected messages, by enumerating losses.

    Lockstep rounds: A ticks and its messages reach B (or are lost), then B
    ticks and its messages reach A (or are lost). States that agree in every
    field are merged, so the enumeration stays small.
    """
    a, b = make(strategy, ATTACK_ROUND)
    states: dict[tuple[object, ...], tuple[float, General, General]] = {
        (a.key(), b.key()): (1.0, a, b)
    }
    for _ in range(ATTACK_ROUND):
        states = _half_round(states, GENERAL_A, loss)
        states = _half_round(states, GENERAL_B, loss)
    probabilities = dict.fromkeys(OUTCOMES, 0.0)
    messages = 0.0
    for probability, a, b in states.values():
        probabilities[classify(a, b)] += probability
        messages += probability * (a.sent + b.sent)
    return probabilities, messages


def _half_round(
    states: dict[tuple[object, ...], tuple[float, General, General]], mover: int, loss: float
) -> dict[tuple[object, ...], tuple[float, General, General]]:
    out: dict[tuple[object, ...], tuple[float, General, General]] = {}
    for probability, a, b in states.values():
        a, b = a.clone(), b.clone()
        sender = a if mover == GENERAL_A else b
        sender.tick()
        messages: list[Courier] = sender.take_messages()
        for mask in range(1 << len(messages)):
            weight = probability
            for position in range(len(messages)):
                weight *= (1.0 - loss) if mask >> position & 1 else loss
            if weight == 0.0:
                continue
            a2, b2 = a.clone(), b.clone()
            target = b2 if mover == GENERAL_A else a2
            for position, message in enumerate(messages):
                if mask >> position & 1:
                    target.step(message)
            key = (a2.key(), b2.key())
            known = out.get(key)
            out[key] = (weight + (known[0] if known else 0.0), a2, b2)
    return out


def _simulate(strategy: Strategy, loss: float, rng: random.Random, make: Maker) -> tuple[str, int]:
    profile = NetworkProfile(base_latency=MS, jitter=MS // 4, loss=loss, duplicate=0.0, spike=0.0)
    world: LabWorld[Courier, General] = LabWorld(rng, profile, TICK)
    a, b = make(strategy, ATTACK_ROUND)
    # A acts at the start of each round and B half a round later, so a message
    # reaches its reader within the round it was sent (as in the exact model).
    world.add(GENERAL_A, lambda: a, tick_offset=0)
    world.add(GENERAL_B, lambda: b, tick_offset=TICK // 2)
    world.start()
    world.run_until((ATTACK_ROUND + 1) * TICK)
    return classify(a, b), world.network.sent


def _within(observed: int, trials: int, probability: float) -> bool:
    spread = TOLERANCE_SIGMAS * math.sqrt(max(probability * (1.0 - probability), 0.0) / trials)
    return abs(observed / trials - probability) <= spread + 2.0 / trials


def run(
    seed: int,
    trials: int,
    *,
    make: Maker = make_generals,
    strategies: tuple[Strategy, ...] = STRATEGIES,
    loss_rates: tuple[float, ...] = LOSS_RATES,
) -> LabResult:
    """``trials`` simulated runs per (strategy, loss rate), beside the exact figures."""
    rows: list[dict[str, Json]] = []
    nontrivial: list[str] = []
    discrepancies: list[str] = []
    observed_somewhere = 0
    smallest: tuple[float, str] = (1.0, "")
    tables: list[Table] = []
    charts: list[Chart] = []
    for loss in loss_rates:
        table_rows: list[tuple[str, ...]] = []
        by_family: dict[str, list[tuple[float, float, float]]] = {}
        for strategy in strategies:
            if loss == loss_rates[0]:
                clean, _ = exact_outcomes(strategy, 0.0, make)
                if clean["together"] < 1.0 - 1e-12:
                    nontrivial.append(strategy.label())
            exact, messages = exact_outcomes(strategy, loss, make)
            rng = random.Random(f"herald-lab/{NAME}/{seed}/{strategy.label()}/{loss}")
            counts = dict.fromkeys(OUTCOMES, 0)
            spent = 0
            for _ in range(trials):
                outcome, sent = _simulate(strategy, loss, rng, make)
                counts[outcome] += 1
                spent += sent
            alone_exact = sum(p for outcome, p in exact.items() if disagree(outcome))
            alone_seen = sum(n for outcome, n in counts.items() if disagree(outcome))
            observed_somewhere += alone_seen > 0
            if alone_exact < smallest[0]:
                smallest = (alone_exact, f"{strategy.label()} at loss {loss}")
            for outcome in OUTCOMES:
                if not _within(counts[outcome], trials, exact[outcome]):
                    discrepancies.append(
                        f"{strategy.label()} at loss {loss}: {outcome} observed "
                        f"{counts[outcome]}/{trials}, exact {exact[outcome]:.4f}"
                    )
            rows.append(
                {
                    "strategy": strategy.label(),
                    "loss": loss,
                    "messages_exact": round(messages, 4),
                    "messages_sim": round(spent / trials, 4),
                    "disagree_exact": float(f"{alone_exact:.6g}"),
                    "disagree_sim": round(alone_seen / trials, 6),
                    "together_exact": round(exact["together"], 6),
                    "together_sim": round(counts["together"] / trials, 6),
                    "neither_exact": round(exact["neither"], 6),
                }
            )
            table_rows.append(
                (
                    strategy.label(),
                    f"{messages:.2f}",
                    f"{alone_exact:.2e}",
                    f"{alone_seen}/{trials}",
                    f"{exact['together']:.3f}",
                    f"{counts['together'] / trials:.3f}",
                    f"{exact['neither']:.3f}",
                )
            )
            by_family.setdefault(strategy.family, []).append(
                (messages, alone_exact, alone_seen / trials)
            )
        tables.append(
            Table(
                f"loss {loss:.0%}: one general attacks alone (exact, and seen in simulation)",
                (
                    "strategy",
                    "messages",
                    "P(one alone) exact",
                    "one alone seen",
                    "P(together) exact",
                    "together seen",
                    "P(neither) exact",
                ),
                tuple(table_rows),
            )
        )
        series: list[Series] = []
        for family, points in by_family.items():
            points.sort()
            series.append(
                Series(
                    f"{family} (exact)",
                    tuple(m for m, _, _ in points),
                    tuple(p for _, p, _ in points),
                )
            )
            seen = [(m, s) for m, _, s in points if s > 0]
            if seen:
                series.append(
                    Series(
                        f"{family} (simulated)",
                        tuple(m for m, _ in seen),
                        tuple(s for _, s in seen),
                        style="points",
                    )
                )
        charts.append(
            Chart(
                f"loss {loss:.0%}",
                "messages spent (mean)",
                "P(one attacks alone)",
                tuple(series),
                log_y=True,
            )
        )

    configurations = len(strategies) * len(loss_rates)
    verdict = Verdict()
    verdict.expect(
        not nontrivial,
        "every strategy attacks together when no messenger is lost (exact)",
        f"strategies that fail even without loss: {', '.join(nontrivial)}",
    )
    positive = smallest[0] > 0.0
    verdict.expect(
        not positive,
        "a finite strategy made disagreement impossible",
        f"certain agreement: P(one attacks alone) > 0 for all {configurations} "
        f"(strategy, loss) pairs, smallest {smallest[0]:.2e} ({smallest[1]})",
        predicted=False,
    )
    verdict.expect(
        not discrepancies,
        f"simulation matches the exact probabilities in {configurations}/{configurations} "
        f"configurations (within {TOLERANCE_SIGMAS:.0f} standard errors)",
        "simulation and exact computation disagree: " + "; ".join(discrepancies[:3]),
    )
    figures: dict[str, Json] = {
        "attack_round": ATTACK_ROUND,
        "loss_rates": list(loss_rates),
        "configurations": configurations,
        "smallest_disagreement_exact": float(f"{smallest[0]:.6g}"),
        "smallest_disagreement_at": smallest[1],
        "disagreement_seen_in": observed_somewhere,
        "discrepancies": len(discrepancies),
        "results": list(rows),
    }
    notes = [
        "More messengers buy a smaller chance of attacking alone, never zero: each "
        "factor of 1/loss costs about one more message. Acknowledgement chains move "
        "the risk to whoever sends the last message, and make attacking together rarer."
    ]
    return LabResult(NAME, seed, trials, verdict, figures, tables, charts, notes)
