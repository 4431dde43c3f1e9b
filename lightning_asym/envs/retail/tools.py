"""The retail tools: OpenAI function schemas, argument checks, and a dispatcher that never raises.

The effects live in `ops`; this module names them, describes them to the agent, and turns
any refusal or bad call into an `Error: ...` observation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lightning_asym.envs.retail import ops
from lightning_asym.envs.retail.db import DB
from lightning_asym.envs.retail.ops import ADDRESS_FIELDS, CANCEL_REASONS, ToolError, order_refund_total


@dataclass(frozen=True)
class Tool:
    name: str
    fn: Callable[..., str]
    description: str
    params: dict[str, tuple[str, str]]  # name -> (json type, description)
    write: bool = False

    @property
    def schema(self) -> dict[str, Any]:
        props: dict[str, Any] = {}
        for p, (typ, desc) in self.params.items():
            props[p] = (
                {"type": "array", "items": {"type": "string"}, "description": desc}
                if typ == "array"
                else {"type": typ, "description": desc}
            )
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": {"type": "object", "properties": props, "required": list(self.params)},
            },
        }


# ----------------------------------------------------------------------------- registry

_ADDR = {f: ("string", f"{f} of the new address (empty string if none)") for f in ADDRESS_FIELDS}
_OID = {"order_id": ("string", "the order id, such as '#W0000000' (with the '#')")}
_PM = {"payment_method_id": ("string", "a payment method id of the user, such as 'gift_card_0000000'")}
_ITEMS = {"item_ids": ("array", "ids of the items of the order to act on")}
_NEW = {"new_item_ids": ("array", "ids of the new variants, in the same order as item_ids")}

TOOLS: dict[str, Tool] = {
    t.name: t
    for t in [
        Tool(
            "find_user_id_by_email",
            ops.find_user_id_by_email,
            "Find a user id by email.",
            {"email": ("string", "the user's email")},
        ),
        Tool(
            "find_user_id_by_name_zip",
            ops.find_user_id_by_name_zip,
            "Find a user id by first name, last name and zip code.",
            {
                "first_name": ("string", "first name"),
                "last_name": ("string", "last name"),
                "zip": ("string", "zip code"),
            },
        ),
        Tool(
            "get_user_details",
            ops.get_user_details,
            "Get a user's details: name, email, address, payment methods, orders.",
            {"user_id": ("string", "the user id, such as 'ava_smith_1234'")},
        ),
        Tool(
            "get_order_details",
            ops.get_order_details,
            "Get an order's status, items, address and payment history.",
            _OID,
        ),
        Tool(
            "get_product_details",
            ops.get_product_details,
            "Get a product's variants with options, prices and availability.",
            {"product_id": ("string", "the product id")},
        ),
        Tool(
            "list_all_product_types",
            ops.list_all_product_types,
            "List every product type name and its product id.",
            {},
        ),
        Tool(
            "cancel_pending_order",
            ops.cancel_pending_order,
            "Cancel a pending order; the payment is refunded to the "
            "original payment method. Needs the user's explicit confirmation.",
            {**_OID, "reason": ("string", "'no longer needed' or 'ordered by mistake'")},
            write=True,
        ),
        Tool(
            "modify_pending_order_items",
            ops.modify_pending_order_items,
            "Swap items of a pending order for other "
            "available variants of the same product; once per order. Needs explicit confirmation.",
            {**_OID, **_ITEMS, **_NEW, **_PM},
            write=True,
        ),
        Tool(
            "modify_pending_order_address",
            ops.modify_pending_order_address,
            "Change the shipping address of a pending order. Needs explicit confirmation.",
            {**_OID, **_ADDR},
            write=True,
        ),
        Tool(
            "modify_pending_order_payment",
            ops.modify_pending_order_payment,
            "Change the payment method of a pending order. Needs explicit confirmation.",
            {**_OID, **_PM},
            write=True,
        ),
        Tool(
            "return_delivered_order_items",
            ops.return_delivered_order_items,
            "Request a return of items of a "
            "delivered order; refund to the original payment method or a gift card. Needs explicit confirmation.",
            {**_OID, **_ITEMS, **_PM},
            write=True,
        ),
        Tool(
            "exchange_delivered_order_items",
            ops.exchange_delivered_order_items,
            "Request an exchange of items of a "
            "delivered order for available variants of the same product. Needs explicit confirmation.",
            {**_OID, **_ITEMS, **_NEW, **_PM},
            write=True,
        ),
        Tool(
            "modify_user_address",
            ops.modify_user_address,
            "Change a user's default address. Needs explicit confirmation.",
            {"user_id": ("string", "the user id"), **_ADDR},
            write=True,
        ),
        Tool(
            "transfer_to_human_agents",
            ops.transfer_to_human_agents,
            "Transfer the user to a human agent (ends the "
            "conversation); only for requests outside this policy.",
            {"summary": ("string", "a summary of the user's issue")},
        ),
        Tool(
            "calculate",
            ops.calculate,
            "Calculate the value of an arithmetic expression (numbers, + - * /, parentheses), "
            "rounded to cents; no effect on the database or the user.",
            {"expression": ("string", "the expression, such as '2 + 2' or '(120.5 - 99.99) * 2'")},
        ),
        Tool(
            "think",
            ops.think,
            "Think step by step; no effect on the database or the user.",
            {"thought": ("string", "your reasoning")},
        ),
    ]
}

WRITE_TOOLS = frozenset(n for n, t in TOOLS.items() if t.write)
TRANSFER = "transfer_to_human_agents"
"""The tool that hands the user to a human agent and ends the episode."""
PRIVATE_READS = ("get_user_details", "get_order_details")
"""Reads of one user's data: like writes, they need the user authenticated and are theirs only."""
TOOL_SCHEMAS: list[dict[str, Any]] = [t.schema for t in TOOLS.values()]


def check_args(tool: Tool, kwargs: Any) -> dict[str, Any]:
    """Validated (lightly coerced) arguments, or `ToolError` naming what is wrong."""
    if not isinstance(kwargs, dict):
        raise ToolError(f"arguments of {tool.name} must be a JSON object")
    unknown = sorted(set(kwargs) - set(tool.params))
    if unknown:
        raise ToolError(f"unexpected argument(s) {unknown} for {tool.name}; expected {list(tool.params)}")
    missing = [p for p in tool.params if p not in kwargs]
    if missing:
        raise ToolError(f"missing argument(s) {missing} for {tool.name}")
    out: dict[str, Any] = {}
    for p, (typ, _) in tool.params.items():
        v = kwargs[p]
        if typ == "string":
            if isinstance(v, int) and not isinstance(v, bool):
                v = str(v)  # ids typed as numbers are a common, harmless slip
            if not isinstance(v, str):
                raise ToolError(f"argument {p!r} of {tool.name} must be a string")
        else:
            if not isinstance(v, list):
                raise ToolError(f"argument {p!r} of {tool.name} must be a list of strings")
            v = [str(x) if isinstance(x, int) and not isinstance(x, bool) else x for x in v]
            if not all(isinstance(x, str) for x in v):
                raise ToolError(f"argument {p!r} of {tool.name} must be a list of strings")
        out[p] = v
    return out


def run_tool(db: DB, name: str, kwargs: Any) -> tuple[str, bool]:
    """Apply a tool to `db` in place; returns `(observation, ok)`. Never raises."""
    tool = TOOLS.get(name)
    if tool is None:
        return f"Error: unknown tool {name!r}; available tools: {', '.join(TOOLS)}", False
    try:
        return tool.fn(db, **check_args(tool, kwargs)), True
    except ToolError as e:
        return f"Error: {e}", False
    except Exception as e:  # a tool bug must not end the episode; report it as an error observation
        return f"Error: {type(e).__name__}: {e}", False


__all__ = [
    "ADDRESS_FIELDS",
    "CANCEL_REASONS",
    "TOOLS",
    "PRIVATE_READS",
    "TOOL_SCHEMAS",
    "TRANSFER",
    "WRITE_TOOLS",
    "Tool",
    "ToolError",
    "check_args",
    "order_refund_total",
    "run_tool",
]
