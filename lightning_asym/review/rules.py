"""`RetailRuleCritic`: the retail policy's checkable rules, written as code.

A baseline critic and a labeler for the critic pipeline. It judges only from what it is
given: the conversation (`request.messages`, tool results included), the proposed action,
and read access to the store (the task's initial database rebuilt from its seed with the
conversation's successful writes replayed, see `retail_state`), which is the same data the
agent's tools expose. It never reads the task's gold actions, required outputs or the env.

Each proposal is checked in this order; the first rule broken gives a `revise` verdict whose
feedback names the rule (its id in `envs/retail/policy.py`, the vocabulary the env's judgement
and the labeler share) and says in one sentence what to do instead:

==========================  =============================================================
rule                        revise when
==========================  =============================================================
``tool-call format``        the proposal could not be parsed
``known tools``             the tool does not exist
``authenticate first``      a write or private read (user or order details) comes before a
                            `find_user_id_*` call returned a user id
``own data only``           a private read or write names another user, their order or a
                            payment method, item or variant that does not fit the order
``explicit confirmation``   a write without a "yes" as the user's latest reply after the last
                            write
``order state``             the tool would refuse the write in the current state (dry run)
``explicit confirmation``   the description the user said yes to does not name the write's
                            order, reason, address, items or payment method
``no made-up facts``        a reply states a dollar amount nothing in the conversation
                            supports, a count of available variants that the product
                            details contradict, or says a change was made that no write made
==========================  =============================================================

Reads, `think` and transfers to a human are approved: whether a transfer was needed cannot be
judged by rules.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from lightning_asym.backends.toolcalls import FORMAT_HINT
from lightning_asym.envs.retail.conversation import Conversation, read_conversation
from lightning_asym.envs.retail.db import DB
from lightning_asym.envs.retail.env import amounts
from lightning_asym.envs.retail.policy import (
    AUTHENTICATE_FIRST,
    EXPLICIT_CONFIRMATION,
    KNOWN_TOOLS,
    NO_MADE_UP_FACTS,
    ORDER_STATE,
    OWN_DATA_ONLY,
    TOOL_CALL_FORMAT,
)
from lightning_asym.envs.retail.tools import PRIVATE_READS, TOOLS, WRITE_TOOLS
from lightning_asym.review.base import ReviewRequest
from lightning_asym.review.retail_state import (
    StateCache,
    available_counts,
    dry_run,
    norm_order_id,
    supported_amounts,
)
from lightning_asym.types import APPROVE, REVISE, Action, Review

_CLAIM_RE = re.compile(
    r"\b(?:has been|have been|is now|are now|will now|successfully)\b[^.;]*?"
    r"\b(?:cancel\w*|modif\w*|return\w*|exchang\w*|paid|chang\w*|updat\w*|swapp\w*)"
    r"|\bwill now ship\b|\b(?:return|exchange)\b[^.;]*\bis requested\b|^\s*done\b"
    r"|\bdefault address (?:is now|has been)\b",
    re.IGNORECASE,
)
_ORDER_ID_RE = re.compile(r"#?\b(w\d{7})\b", re.IGNORECASE)
_COUNT_RE = re.compile(
    r"\b(\d+)\s+(?:available\s+(?:variants?|options|items)|variants?\s+(?:are\s+)?available)\b"
)
_ASKS_RE = re.compile(r"\bconfirm\b|yes/no|\bproceed\?", re.IGNORECASE)

Finding = tuple[str, str]
"""(rule, feedback): the id of a rule the proposal breaks (`envs/retail/policy.py`) and what to
do instead."""


class RetailRuleCritic:
    """Reviews retail proposals with the policy's checkable rules (see the module docstring).

    Args:
        check_replies: also check replies to the user (made-up amounts and counts, claimed changes).
        cache_size: current databases kept, keyed by task seed and the writes so far.
    """

    def __init__(self, check_replies: bool = True, cache_size: int = 256) -> None:
        self.check_replies = check_replies
        self.cache = StateCache(cache_size)

    def review(self, requests: Sequence[ReviewRequest]) -> list[Review]:
        out = []
        for request in requests:
            found = self.check(request)
            out.append(Review(APPROVE) if found is None else Review(REVISE, f"{found[0]}: {found[1]}"))
        return out

    def check(self, request: ReviewRequest) -> Finding | None:
        """The first rule `request`'s proposal breaks, or None when every rule holds."""
        action = request.action
        if action is None or not isinstance(action.name, str) or not isinstance(action.kwargs, dict):
            why = request.parse_error or "it needs a tool name and a JSON object of arguments"
            return TOOL_CALL_FORMAT, f"your output could not be parsed ({why}); {FORMAT_HINT}."
        conv = read_conversation(request.messages)
        if action.is_reply:
            return self._check_reply(action.content, conv) if self.check_replies else None
        if action.name not in TOOLS:
            return KNOWN_TOOLS, f"{action.name!r} is not a tool; call one of {', '.join(TOOLS)}."
        if action.name not in WRITE_TOOLS and action.name not in PRIVATE_READS:
            return None
        if conv.auth_user is None:
            return (
                AUTHENTICATE_FIRST,
                "locate the user's id with find_user_id_by_email or find_user_id_by_name_zip "
                f"before calling {action.name}.",
            )
        db = self.cache.current_db(request.task, conv)
        found = _check_ids(action, conv.auth_user, db)
        if found is not None or action.name not in WRITE_TOOLS:
            return found
        if not conv.confirmed:
            return (
                EXPLICIT_CONFIRMATION,
                f"before calling {action.name}, list exactly what it will do (order id, items, payment "
                "method, amounts) and wait for the user's explicit yes; one yes covers one write.",
            )
        obs, ok = dry_run(db, action)
        if not ok:
            return (
                ORDER_STATE,
                f"{action.name} is refused in the current state ({obs.removeprefix('Error: ')}); "
                "tell the user why it cannot be done instead.",
            )
        missing = _undescribed(action, conv.confirmed_text, db)
        if missing is not None:
            return (
                EXPLICIT_CONFIRMATION,
                f"the description the user said yes to does not name {missing}; call {action.name} with "
                "exactly what you described, or describe this change and ask again.",
            )
        return None

    def _check_reply(self, text: str, conv: Conversation) -> Finding | None:
        supported = supported_amounts(conv)
        bad = amounts(text) - supported if supported is not None else set()
        if bad:
            listed = ", ".join(f"${a}" for a in sorted(bad))
            return (
                NO_MADE_UP_FACTS,
                f"{listed} appears in no tool result of this conversation; state amounts exactly as the "
                "tools gave them (look them up first if needed).",
            )
        counts = available_counts(conv) if _COUNT_RE.search(text) else {}
        for sentence in re.split(r"(?<=[.!?])\s+", text):
            said = _COUNT_RE.search(sentence)
            named = [(n, c) for n, c in counts.items() if said and n in sentence.lower()]
            if len(named) == 1 and int(said.group(1)) != named[0][1]:
                return (
                    NO_MADE_UP_FACTS,
                    f"the product details list {named[0][1]} available variants of {named[0][0]}, not "
                    f"{said.group(1)}; state facts exactly as the tools gave them.",
                )
        if _ASKS_RE.search(text):
            return None
        for sentence in re.split(r"(?<=[.!?])\s+", text):
            if not _CLAIM_RE.search(sentence):
                continue
            done = {norm_order_id(a.kwargs.get("order_id")).lower() for a in conv.writes}
            for oid in _ORDER_ID_RE.findall(sentence):
                if "#" + oid.lower() not in done:
                    return (
                        NO_MADE_UP_FACTS,
                        f"you say order #{oid.upper()} was changed but no write on it succeeded; describe "
                        "the change, get the user's yes and make the call before reporting it.",
                    )
            if "default address" in sentence.lower() and not any(
                a.name == "modify_user_address" for a in conv.writes
            ):
                return (
                    NO_MADE_UP_FACTS,
                    "you say the default address was changed but modify_user_address did not succeed; "
                    "make the change (after the user's yes) before reporting it.",
                )
        return None


# ----------------------------------------------------------------------------- helpers


def _check_ids(action: Action, auth_user: str, db: DB) -> Finding | None:
    """Ids in the arguments exist and belong to the authenticated user (and its order)."""
    kw = action.kwargs
    rule = OWN_DATA_ONLY
    if "user_id" in kw and kw["user_id"] != auth_user:
        return (
            rule,
            f"user_id {kw['user_id']!r} is not the authenticated user {auth_user!r}; act only for them.",
        )
    if "order_id" not in kw:
        return None
    oid = norm_order_id(kw["order_id"])
    order = db["orders"].get(oid)
    if order is None:
        if action.name in WRITE_TOOLS:
            return rule, f"order {oid} does not exist; use an order id from the user's details."
        return None  # a read of a missing order only returns an error
    if order["user_id"] != auth_user:
        return (
            rule,
            f"order {oid} belongs to another user, not {auth_user!r}; act only on this user's orders.",
        )
    if action.name not in WRITE_TOOLS:
        return None
    pms = db["users"][auth_user]["payment_methods"]
    pm = kw.get("payment_method_id")
    if isinstance(pm, str) and pm not in pms:
        return (
            rule,
            f"payment method {pm} is not one of the user's ({', '.join(sorted(pms))}); use one of them.",
        )
    by_id = {i["item_id"]: i for i in order["items"]}
    items = kw.get("item_ids") if isinstance(kw.get("item_ids"), list) else []
    for item_id in items:
        if str(item_id) not in by_id:
            return (
                rule,
                f"item {item_id} is not in order {oid} (its items: {', '.join(by_id)}); use its item ids.",
            )
    news = kw.get("new_item_ids") if isinstance(kw.get("new_item_ids"), list) else []
    for old_id, new_id in zip(items, news):
        product = db["products"][by_id[str(old_id)]["product_id"]]
        variant = product["variants"].get(str(new_id))
        if variant is None:
            return (
                rule,
                f"new item {new_id} is not a variant of {product['name']}; pick one from its product details.",
            )
        if not variant["available"]:
            return (
                rule,
                f"new item {new_id} ({product['name']}) is not available; offer an available variant.",
            )
    return None


def _norm(text: str) -> str:
    return " ".join(text.lower().replace(",", " ").split())


def _has(text: str, word: str) -> bool:
    """`word` occurs in normalized `text`, not glued to other letters or digits."""
    w = _norm(str(word))
    return bool(w) and re.search(r"(?<![a-z0-9])" + re.escape(w) + r"(?![a-z0-9])", text) is not None


def _named(text: str, ident: str, candidates: dict[str, Any], words: list[str]) -> bool:
    """An id is named by itself; when the text names no id of its kind, by its descriptive words."""
    if _has(text, ident):
        return True
    return not any(_has(text, c) for c in candidates) and all(_has(text, w) for w in words)


def _undescribed(action: Action, described: str, db: DB) -> str | None:
    """The first argument of the write that the confirmed description does not name, or None."""
    t = _norm(described)
    kw = action.kwargs
    if "order_id" in kw and not _has(t, str(kw["order_id"]).lstrip("#")):
        return f"order {norm_order_id(kw['order_id'])}"
    if "reason" in kw and not _has(t, kw["reason"]):
        return f"the reason {kw['reason']!r}"
    for f in ("address1", "zip"):
        if f in kw and not _has(t, kw[f]):
            return f"the {f} {kw[f]!r}"
    order = db["orders"].get(norm_order_id(kw.get("order_id", "")))
    if order is None:
        return None
    by_id = {i["item_id"]: i for i in order["items"]}
    olds = [str(x) for x in kw.get("item_ids", [])]  # the tools accept ids typed as numbers
    for item_id in olds:
        item = by_id[item_id]
        if not _named(t, item_id, by_id, [item["name"], *item["options"].values()]):
            return f"item {item_id}"
    for old_id, new_id in zip(olds, [str(x) for x in kw.get("new_item_ids", [])]):
        variants = db["products"][by_id[old_id]["product_id"]]["variants"]
        v = variants[new_id]
        if not _named(t, new_id, variants, [by_id[old_id]["name"], *v["options"].values()]):
            return f"new item {new_id}"
    pm_id = kw.get("payment_method_id")
    if isinstance(pm_id, str):
        pms = db["users"][order["user_id"]]["payment_methods"]
        pm = pms[pm_id]
        alt = pm.get("last_four") or ("gift card" if pm["source"] == "gift_card" else "paypal")
        if not _named(t, pm_id, pms, [alt]):
            return f"payment method {pm_id}"
    return None
