"""`NoisyOracleBackend`: an actor that knows the gold plan and fails the way LLM agents do.

It learns each episode's task through `start(key, task)`, reads the conversation to see where
the episode stands (see `oracle_plan`), and proposes what a competent agent would do next:
authenticate, look up, describe the write and ask for a yes, write, report the facts the user
asked for. Each failure mode strikes with its own probability at each opportunity:

==========================  =====================================================  ===============
mode                        what happens                                           opportunity
==========================  =====================================================  ===============
``unauthenticated_write``   skips authentication and goes straight to the work     per episode
``give_up``                 transfers to a human agent instead of working          per intent
``premature_end``           claims the intent is done without doing it             per confirmation
``skipped_confirmation``    writes without describing the action and asking        per confirmation
``wrong_order``             writes on another order of the user                    per write
``wrong_argument``          writes with a wrong item, payment method, reason, zip  per write
``hallucinated_output``     states a wrong amount or count (and sticks to it)      per intent with outputs
==========================  =====================================================  ===============

Every mode without an explicit rate uses `error_rate`. Randomness comes from the `seeds`
given to `complete` and a per-key call counter, so runs are reproducible.

Critic feedback: when the conversation ends with a user message starting with
`REVISION_PREFIX` (after the rejected proposal), the oracle proposes again and fixes its
injected mistake with probability `fix_prob` (otherwise it repeats it). A clean proposal
that was rejected (a false alarm) is proposed again unchanged, except that with probability
`misled_prob` the actor takes the wrong feedback to heart, as LLM agents do: a correct write
comes back with a wrong argument, and any other correct action turns into giving up (a
transfer to a human). So a critic's false alarms cost success, not only tokens.

Tasks of other envs that offer an agent plan (`data["agent_plan"]`, see `envs/agent_plan.py`;
τ-bench's tasks do) are played by `oracle_steps` with the same modes, where they apply:
``unauthenticated_write`` skips the plan's authentication call, ``give_up`` transfers at the
first step of an intent (the reads before a write, and the write), ``premature_end`` and
``skipped_confirmation`` strike where the oracle would ask for a yes before a write,
``wrong_order`` and ``wrong_argument`` take the env's real wrong values (another order, item,
variant or payment method of the same user), and ``hallucinated_output`` misstates the amounts
and counts among the task's required outputs in the final "Done." reply. Tasks with neither
get a generic plan: call the gold actions in order, then say "Done.".
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from lightning_asym.backends.scripted import TextPolicyBackend
from lightning_asym.backends.toolcalls import format_action
from lightning_asym.envs.retail import oracle_plan as plan
from lightning_asym.envs.retail import oracle_steps as steps
from lightning_asym.envs.retail.conversation import strip_revisions
from lightning_asym.types import REVISION_PREFIX, Action, Message, Task

MODES = (
    "unauthenticated_write",
    "give_up",
    "premature_end",
    "skipped_confirmation",
    "wrong_order",
    "wrong_argument",
    "hallucinated_output",
)
__all__ = ["MODES", "REVISION_PREFIX", "NoisyOracleBackend"]


class NoisyOracleBackend(TextPolicyBackend):
    """A gold-plan actor with configurable LLM-like mistakes.

    Args:
        error_rate: the probability of every failure mode whose own rate is not given.
        unauthenticated_write, give_up, premature_end, skipped_confirmation, wrong_order,
        wrong_argument, hallucinated_output: per-mode probabilities (see the module docstring).
        fix_prob: probability that a revision request fixes an injected mistake.
        misled_prob: probability that a revision request on a correct proposal makes it wrong.
    """

    def __init__(
        self,
        error_rate: float = 0.05,
        *,
        unauthenticated_write: float | None = None,
        give_up: float | None = None,
        premature_end: float | None = None,
        skipped_confirmation: float | None = None,
        wrong_order: float | None = None,
        wrong_argument: float | None = None,
        hallucinated_output: float | None = None,
        fix_prob: float = 0.8,
        misled_prob: float = 0.3,
    ) -> None:
        super().__init__()
        given = dict(
            unauthenticated_write=unauthenticated_write,
            give_up=give_up,
            premature_end=premature_end,
            skipped_confirmation=skipped_confirmation,
            wrong_order=wrong_order,
            wrong_argument=wrong_argument,
            hallucinated_output=hallucinated_output,
        )
        self.rates = {m: error_rate if r is None else r for m, r in given.items()}
        self.rates["misled"] = misled_prob
        checked = [("error_rate", error_rate), ("fix_prob", fix_prob), ("misled_prob", misled_prob)]
        for name, p in [*checked, *self.rates.items()]:
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        self.fix_prob = fix_prob
        self.misled_prob = misled_prob
        self.opportunities: Counter[str] = Counter()
        """How often each failure mode could have struck (for measuring rates)."""
        self.injected: Counter[str] = Counter()
        """How often each failure mode struck."""

    # ------------------------------------------------------------------ ChatBackend

    def reply(self, messages: Sequence[Message], task: Task | None, seed: int, call: int) -> str:
        return self._propose(list(messages), task, random.Random(f"oracle:{seed}:{call}"))

    # ------------------------------------------------------------------ internals

    def _propose(self, conv: list[Message], task: Task | None, rng: random.Random) -> str:
        if task is None:
            return "Hello! How can I help you today?"
        base, rejected = strip_revisions(conv)
        if rejected is None:
            return format_action(self._noisy(base, task, rng))
        # a revision request: fix an injected mistake with probability fix_prob
        clean = format_action(self._clean(base, task))
        if rejected.strip() == clean.strip():  # a false alarm
            if self._strike("misled", rng):
                return format_action(self._misled(base, task, rng))
            return clean
        return clean if rng.random() < self.fix_prob else rejected

    def _misled(self, conv: list[Message], task: Task, rng: random.Random) -> Action:
        """What a correct action becomes when the actor believes a wrong revision request."""
        if "intents" in task.data:
            step = plan.next_step(conv, task, force_auth=True)  # what `_clean` proposes, with its tag
            action, is_write = step.action, step.tag == "write"
        elif steps.has_plan(task):
            pstep = steps.next_step(conv, task, force_auth=True)
            if pstep.tag == "write":
                return steps.wrong_argument(pstep, rng)
            return Action(plan.TRANSFER, {"summary": plan.GIVE_UP_SUMMARY})
        else:
            action = _generic_step(conv, task)
            is_write = not action.is_reply
        if is_write:
            return plan.wrong_argument(action, conv, task, rng)
        return Action(plan.TRANSFER, {"summary": plan.GIVE_UP_SUMMARY})

    def _clean(self, conv: list[Message], task: Task) -> Action:
        if "intents" in task.data:
            return plan.next_step(conv, task, force_auth=True).action
        if steps.has_plan(task):
            return steps.next_step(conv, task, force_auth=True).action
        return _generic_step(conv, task)

    def _strike(self, mode: str, rng: random.Random) -> bool:
        self.opportunities[mode] += 1
        hit = rng.random() < self.rates[mode]
        if hit:
            self.injected[mode] += 1
        return hit

    def _noisy(self, conv: list[Message], task: Task, rng: random.Random) -> Action:
        if "intents" not in task.data and steps.has_plan(task):
            return self._noisy_plan(conv, task, rng)
        if "intents" not in task.data:
            action = _generic_step(conv, task)
            if not action.is_reply and self._strike("wrong_argument", rng):
                return plan.wrong_argument(action, conv, task, rng)
            return action
        step = plan.next_step(conv, task)
        if step.tag == "auth" and self._strike("unauthenticated_write", rng):
            step = plan.next_step(conv, task, skip_auth=True)
        if step.first_of_intent and step.tag != "transfer" and self._strike("give_up", rng):
            return Action(plan.TRANSFER, {"summary": plan.GIVE_UP_SUMMARY})
        if step.tag == "confirm":
            if self._strike("premature_end", rng):
                return Action.reply(plan.report_text(step.intent))
            if self._strike("skipped_confirmation", rng):
                return step.context["write"]
        if step.tag == "write":
            if self._strike("wrong_order", rng):
                return plan.wrong_order(step.action, conv, task, rng)
            if self._strike("wrong_argument", rng):
                return plan.wrong_argument(step.action, conv, task, rng)
        if step.tag in ("confirm", "report") and step.intent and step.intent["outputs"]:
            return self._maybe_hallucinate(step, conv, rng)
        return step.action

    def _noisy_plan(self, conv: list[Message], task: Task, rng: random.Random) -> Action:
        """`_noisy` for a task with an env's agent plan (see `oracle_steps`)."""
        step = steps.next_step(conv, task)
        if step.tag == "auth" and self._strike("unauthenticated_write", rng):
            step = steps.next_step(conv, task, skip_auth=True)
        if step.first_of_intent and step.tag != "transfer" and self._strike("give_up", rng):
            return Action(plan.TRANSFER, {"summary": plan.GIVE_UP_SUMMARY})
        if step.tag == "confirm":
            if self._strike("premature_end", rng):
                return Action.reply(steps.done_text(task))
            if self._strike("skipped_confirmation", rng):
                return step.write
        if step.tag == "write":
            if self._strike("wrong_order", rng):
                return steps.wrong_target(step, rng)
            if self._strike("wrong_argument", rng):
                return steps.wrong_argument(step, rng)
        outputs = steps.numeric_outputs(task)
        if step.tag == "report" and outputs:
            before = steps.earlier_report(conv)
            wrong = (
                self._strike("hallucinated_output", rng)
                if before is None
                else not all(o in before for o in outputs)
            )
            if wrong:
                return Action.reply(plan.hallucinate(step.action.content, outputs))
        return step.action

    def _maybe_hallucinate(self, step: plan.Step, conv: list[Message], rng: random.Random) -> Action:
        """Where an intent's amounts are first said, maybe state them wrong; later, stay consistent."""
        outputs = step.intent["outputs"]
        before = plan.earlier_statement(conv, step.intent) if step.tag == "report" else None
        if before is None:
            wrong = self._strike("hallucinated_output", rng)
        else:
            wrong = not all(o in before for o in outputs)
        return Action.reply(plan.hallucinate(step.action.content, outputs)) if wrong else step.action


def _generic_step(conv: Sequence[Message], task: Task) -> Action:
    """Call the task's gold actions in order (counting calls already made), then say done."""
    done = sum(1 for e in plan.events_of(conv) if e.kind == "call")
    tools = [a for a in task.gold_actions if not a.is_reply]
    if done < len(tools):
        return tools[done]
    return Action.reply(("Done. " + " ".join(task.required_outputs)).strip())
